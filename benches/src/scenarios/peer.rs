//! Scenario 8: a peer on the same machine, row by row. pgmq (installed from the pgmq crate's
//! embedded SQL into a database of its own) and colony_assign run the same workloads on the
//! same cluster in one run: claim+complete one at a time (50 clients, and 1 client), a batched
//! drain (10 clients, 100 per batch), single enqueue (50 clients, next to a bare INSERT commit)
//! and batched enqueue (20 clients, 100 per call). Issue 9's targets are checked against the
//! pgmq rows measured here.

use super::floor::{Cycle, closed_loop, sql_cycles};
use crate::env::{Bench, connect, spec, spinner};
use crate::measure::{Latencies, ms, rate, ratio};
use crate::report::{Section, Table, target};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use tokio_postgres::Client;

/// Clients of the one-at-a-time claim+complete and single-enqueue rows.
const CLIENTS: usize = 50;
/// Clients of the batched drain, and items per batch.
const DRAIN_CLIENTS: usize = 10;
const BATCH: usize = 100;
/// Clients of the batched enqueue.
const ENQUEUE_CLIENTS: usize = 20;

/// One row: a workload on one system.
struct Measured {
    per_second: f64,
    latency: Latencies,
}

pub async fn run(b: &Bench) -> Section {
    let backlog = b.size.peer_backlog;
    let duration = b.size.measure;
    let drain_batches = b.size.peer_drain_batches;
    let mut section = Section::new(
        "peer",
        "8. A peer on the same machine: pgmq",
        &format!(
            "Same cluster, same run, each workload on both systems. pgmq {PGMQ}: `pgmq.read(queue, vt => 30, qty)` \
             then `pgmq.delete(queue, msg_id)` (or `delete(queue, msg_ids)`), `pgmq.send` and `pgmq.send_batch`. \
             colony_assign: `assign()` then `close()` (or `assign(max_count => {BATCH})` then `close_many()`), \
             `submit()` and `submit_many()`. Every statement prepared, autocommit, over tokio-postgres. Claim rows \
             start from a pre-submitted backlog of {backlog} items per system; the batched drain runs {drain_batches} \
             batches of {BATCH} per client (the queue never runs dry); timed rows run {}s.",
            duration.as_secs()
        ),
    );
    let bar = spinner("peer: installing pgmq".into());
    let pgmq = Pgmq::install(b).await;
    let db = b.fresh_db("peer").await;
    let names = db.executor_names(CLIENTS, "e", "t").await;
    let refill = |n: usize| {
        let db = &db;
        async move {
            db.submit_copies(&spec("t", None), n).await;
            db.vacuum().await;
        }
    };

    bar.set_message("peer: claim + complete, 50 clients");
    pgmq.fill(backlog).await;
    refill(backlog).await;
    let pgmq_one = measure(closed_loop(duration, pgmq.cycles(CLIENTS).await).await);
    let ours_one = measure(closed_loop(duration, sql_cycles(&db.conninfo, &names).await).await);

    bar.set_message("peer: claim + complete, 1 client");
    let pgmq_single = measure(closed_loop(duration, pgmq.cycles(1).await).await);
    let ours_single =
        measure(closed_loop(duration, sql_cycles(&db.conninfo, &names[..1]).await).await);

    bar.set_message("peer: batched drain");
    let drained = DRAIN_CLIENTS * drain_batches * BATCH;
    pgmq.fill(drained + backlog).await;
    refill(drained + backlog).await;
    let pgmq_drain = drain(pgmq.drainers().await, drain_batches).await;
    let ours_drain = drain(
        drainers(&db.conninfo, &names[..DRAIN_CLIENTS]).await,
        drain_batches,
    )
    .await;

    bar.set_message("peer: single enqueue");
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE bare (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL)")
        .await
        .unwrap();
    let document = spec("t", None);
    let bare = measure(
        closed_loop(
            duration,
            statements(
                &db.conninfo,
                CLIENTS,
                "INSERT INTO bare (payload) VALUES ($1)",
                vec![document.clone()],
            )
            .await,
        )
        .await,
    );
    let ours_send = measure(
        closed_loop(
            duration,
            statements(
                &db.conninfo,
                CLIENTS,
                "SELECT colony_assign.submit('bench', $1)",
                vec![document.clone()],
            )
            .await,
        )
        .await,
    );
    let pgmq_send = measure(
        closed_loop(
            duration,
            statements(
                &pgmq.conninfo,
                CLIENTS,
                "SELECT pgmq.send('bench', $1)",
                vec![document.clone()],
            )
            .await,
        )
        .await,
    );

    bar.set_message("peer: batched enqueue");
    let specs = Value::Array(vec![document.clone(); BATCH]);
    let ours_batch = measure(
        closed_loop(
            duration,
            statements(
                &db.conninfo,
                ENQUEUE_CLIENTS,
                "SELECT count(*) FROM colony_assign.submit_many('bench', $1)",
                vec![specs],
            )
            .await,
        )
        .await,
    );
    let pgmq_batch = measure(
        closed_loop(
            duration,
            statements(
                &pgmq.conninfo,
                ENQUEUE_CLIENTS,
                "SELECT count(*) FROM pgmq.send_batch('bench', (SELECT array_agg(m) FROM jsonb_array_elements($1) AS a(m)))",
                vec![Value::Array(vec![document; BATCH])],
            )
            .await,
        )
        .await,
    );
    pgmq.drop(b).await;
    b.drop_db(&db).await;
    bar.finish_and_clear();

    let items = |m: &Measured, per: usize| m.per_second * per as f64;
    let mut table = Table::new(
        "",
        &[
            "workload",
            "pgmq /s",
            "colony_assign /s",
            "colony_assign / pgmq",
            "pgmq p50 ms",
            "colony_assign p50 ms",
        ],
    );
    let mut row = |what: &str, pgmq: f64, ours: f64, pl: &Latencies, ol: &Latencies| {
        table.row(vec![
            what.into(),
            rate(pgmq),
            rate(ours),
            ratio(ours / pgmq),
            ms(pl.p(50.0)),
            ms(ol.p(50.0)),
        ]);
    };
    row(
        &format!("claim + complete, {CLIENTS} clients (cycles)"),
        pgmq_one.per_second,
        ours_one.per_second,
        &pgmq_one.latency,
        &ours_one.latency,
    );
    row(
        "claim + complete, 1 client (cycles)",
        pgmq_single.per_second,
        ours_single.per_second,
        &pgmq_single.latency,
        &ours_single.latency,
    );
    row(
        &format!("batched drain, {DRAIN_CLIENTS} clients x {BATCH} (processes)"),
        items(&pgmq_drain, BATCH),
        items(&ours_drain, BATCH),
        &pgmq_drain.latency,
        &ours_drain.latency,
    );
    row(
        &format!("single enqueue, {CLIENTS} clients"),
        pgmq_send.per_second,
        ours_send.per_second,
        &pgmq_send.latency,
        &ours_send.latency,
    );
    row(
        &format!("batched enqueue, {ENQUEUE_CLIENTS} clients x {BATCH} (processes)"),
        items(&pgmq_batch, BATCH),
        items(&ours_batch, BATCH),
        &pgmq_batch.latency,
        &ours_batch.latency,
    );
    section.tables.push(table);
    let mut reference = Table::new(
        "The reference for single enqueue, in the same run: a bare INSERT of the same JSON document (an identity key \
         and a jsonb column, one index), one commit each.",
        &["workload", "commits/s", "p50 ms", "submit() / bare INSERT"],
    );
    reference.row(vec![
        format!("bare INSERT, {CLIENTS} clients"),
        rate(bare.per_second),
        ms(bare.latency.p(50.0)),
        ratio(ours_send.per_second / bare.per_second),
    ]);
    section.tables.push(reference);

    let claim = ours_one.per_second / pgmq_one.per_second;
    section.targets.push(target(
        "claim + complete, 50 clients / pgmq",
        ">= 1.5x",
        format!("{}x", ratio(claim)),
        claim >= 1.5,
    ));
    let drain_ratio = ours_drain.per_second / pgmq_drain.per_second;
    section.targets.push(target(
        "batched drain / pgmq read(100) + delete(ids)",
        ">= 1.2x (goal >= 100,000 processes/s)",
        format!(
            "{}x ({} processes/s)",
            ratio(drain_ratio),
            rate(items(&ours_drain, BATCH))
        ),
        drain_ratio >= 1.2,
    ));
    let send_vs_bare = ours_send.per_second / bare.per_second;
    section.targets.push(target(
        "single submit, 50 clients / bare INSERT commit",
        ">= 0.60",
        ratio(send_vs_bare),
        send_vs_bare >= 0.6,
    ));
    let send_vs_pgmq = ours_send.per_second / pgmq_send.per_second;
    section.targets.push(target(
        "single submit / pgmq send",
        ">= 1x",
        format!("{}x", ratio(send_vs_pgmq)),
        send_vs_pgmq >= 1.0,
    ));
    let batch_rate = items(&ours_batch, BATCH);
    let batch_ratio = ours_batch.per_second / pgmq_batch.per_second;
    section.targets.push(target(
        "submit_many(100), 20 clients",
        ">= 150,000 processes/s",
        rate(batch_rate),
        batch_rate >= 150_000.0,
    ));
    section.targets.push(target(
        "submit_many(100) / pgmq send_batch(100)",
        ">= 0.5",
        ratio(batch_ratio),
        batch_ratio >= 0.5,
    ));
    section.notes.push(
        "pgmq does far less per item: a queue table per queue, no executor types, locations, names, priorities, \
         deadlines, liveness or notifications, and a delete instead of a recorded result."
            .into(),
    );
    let raw = |m: &Measured| json!({"per_second": m.per_second, "latency": m.latency.summary()});
    section.raw = json!({"pgmq_version": PGMQ,
        "claim_complete": {"pgmq": raw(&pgmq_one), "colony_assign": raw(&ours_one)},
        "claim_complete_1_client": {"pgmq": raw(&pgmq_single), "colony_assign": raw(&ours_single)},
        "batched_drain_batches": {"pgmq": raw(&pgmq_drain), "colony_assign": raw(&ours_drain)},
        "single_enqueue": {"pgmq": raw(&pgmq_send), "colony_assign": raw(&ours_send), "bare_insert": raw(&bare)},
        "batched_enqueue_calls": {"pgmq": raw(&pgmq_batch), "colony_assign": raw(&ours_batch)}});
    section
}

/// The pgmq version the crate's embedded SQL installs.
const PGMQ: &str = "1.13 (pgmq crate 0.34.0-alpha.7, embedded SQL)";

fn measure((per_second, latency): (f64, Latencies)) -> Measured {
    Measured {
        per_second,
        latency,
    }
}

/// pgmq in a database of its own, with queue `bench`.
struct Pgmq {
    conninfo: String,
    name: String,
}

impl Pgmq {
    async fn install(b: &Bench) -> Pgmq {
        let name = "bench_pgmq".to_owned();
        let admin = b.admin().await;
        // Two statements: a multi-statement string runs as one transaction, which these refuse.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let conninfo = format!("{} dbname={name}", b.conninfo);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&conninfo_to_url(&conninfo))
            .await
            .expect("sqlx pool for pgmq");
        pgmq::install::install_sql_from_embedded(&pool)
            .await
            .expect("install pgmq from the crate's embedded SQL");
        pool.close().await;
        connect(&conninfo)
            .await
            .batch_execute("SELECT pgmq.create('bench')")
            .await
            .unwrap();
        Pgmq { conninfo, name }
    }

    async fn drop(&self, b: &Bench) {
        let _ = b
            .admin()
            .await
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }

    async fn fill(&self, n: usize) {
        let client = connect(&self.conninfo).await;
        let mut left = n;
        while left > 0 {
            let batch = left.min(10_000) as i32;
            client
                .execute(
                    "SELECT pgmq.send_batch('bench', (SELECT array_agg('{\"f\": 1}'::jsonb) FROM generate_series(1, $1)))",
                    &[&batch],
                )
                .await
                .unwrap();
            left -= batch as usize;
        }
        client.batch_execute("VACUUM ANALYZE").await.unwrap();
    }

    /// read(1) + delete per cycle.
    async fn cycles(&self, clients: usize) -> Vec<Cycle> {
        let mut cycles: Vec<Cycle> = Vec::new();
        for _ in 0..clients {
            let c = Arc::new(connect(&self.conninfo).await);
            let read = c
                .prepare("SELECT msg_id FROM pgmq.read('bench', 30, 1)")
                .await
                .unwrap();
            let delete = c
                .prepare("SELECT pgmq.delete('bench', $1::bigint)")
                .await
                .unwrap();
            cycles.push(Box::new(move || {
                let (c, read, delete) = (c.clone(), read.clone(), delete.clone());
                Box::pin(async move {
                    match c.query_opt(&read, &[]).await {
                        Ok(Some(row)) => {
                            let id: i64 = row.get(0);
                            c.execute(&delete, &[&id]).await.is_ok()
                        }
                        _ => false,
                    }
                })
            }));
        }
        cycles
    }

    /// read(100) + delete(ids) per batch.
    async fn drainers(&self) -> Vec<Drainer> {
        let mut out = Vec::new();
        for _ in 0..DRAIN_CLIENTS {
            let c = connect(&self.conninfo).await;
            let read = c
                .prepare(&format!(
                    "SELECT msg_id FROM pgmq.read('bench', 30, {BATCH})"
                ))
                .await
                .unwrap();
            let delete = c
                .prepare("SELECT count(*) FROM pgmq.delete('bench', $1::bigint[])")
                .await
                .unwrap();
            out.push(Drainer {
                client: c,
                run: Box::new(move |c: Arc<Client>| {
                    let (read, delete) = (read.clone(), delete.clone());
                    Box::pin(async move {
                        let ids: Vec<i64> = c
                            .query(&read, &[])
                            .await
                            .ok()?
                            .iter()
                            .map(|r| r.get(0))
                            .collect();
                        c.query_one(&delete, &[&ids]).await.ok()?;
                        Some(ids.len())
                    })
                }),
            });
        }
        out
    }
}

type Batch =
    Box<dyn Fn(Arc<Client>) -> futures_util::future::BoxFuture<'static, Option<usize>> + Send>;

/// One client of a batched drain.
struct Drainer {
    client: Client,
    run: Batch,
}

/// assign(max 100) + close_many of what it got, per batch.
async fn drainers(conninfo: &str, names: &[String]) -> Vec<Drainer> {
    let mut out = Vec::new();
    for name in names {
        let c = connect(conninfo).await;
        let assign = c
            .prepare(&format!(
                "SELECT id FROM colony_assign.assign('bench', $1, {BATCH})"
            ))
            .await
            .unwrap();
        let close = c
            .prepare("SELECT count(*) FROM colony_assign.close_many($1, $2)")
            .await
            .unwrap();
        let name = name.clone();
        out.push(Drainer {
            client: c,
            run: Box::new(move |c: Arc<Client>| {
                let (assign, close, name) = (assign.clone(), close.clone(), name.clone());
                Box::pin(async move {
                    let ids: Vec<i64> = c
                        .query(&assign, &[&name])
                        .await
                        .ok()?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    let closes = Value::Array(ids.iter().map(|id| json!({"id": id})).collect());
                    c.query_one(&close, &[&name, &closes]).await.ok()?;
                    Some(ids.len())
                })
            }),
        });
    }
    out
}

/// Every client runs `batches` batches; the rate is batches per second over the whole run,
/// the latency one batch's (both of its statements).
async fn drain(drainers: Vec<Drainer>, batches: usize) -> Measured {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for d in drainers {
        tasks.push(tokio::spawn(async move {
            let client = Arc::new(d.client);
            let mut latency = Latencies::default();
            let mut done = 0;
            for _ in 0..batches {
                let t0 = Instant::now();
                if (d.run)(client.clone()).await.is_some_and(|n| n == BATCH) {
                    latency.record(t0.elapsed());
                    done += 1;
                }
            }
            (latency, done)
        }));
    }
    let mut latency = Latencies::default();
    let mut done = 0;
    for t in tasks {
        let (l, d) = t.await.unwrap();
        latency.merge(&l);
        done += d;
    }
    Measured {
        per_second: done as f64 / start.elapsed().as_secs_f64(),
        latency,
    }
}

/// `clients` connections each running one prepared statement with `params` in a loop.
async fn statements(conninfo: &str, clients: usize, sql: &str, params: Vec<Value>) -> Vec<Cycle> {
    let mut cycles: Vec<Cycle> = Vec::new();
    for _ in 0..clients {
        let c = Arc::new(connect(conninfo).await);
        let statement = c.prepare(sql).await.unwrap();
        let params = Arc::new(params.clone());
        cycles.push(Box::new(move || {
            let (c, statement, params) = (c.clone(), statement.clone(), params.clone());
            Box::pin(async move {
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                c.query(&statement, &refs).await.is_ok()
            })
        }));
    }
    cycles
}

/// key=value connection string → postgres:// URL (sqlx wants a URL).
fn conninfo_to_url(conninfo: &str) -> String {
    let mut parts = std::collections::HashMap::new();
    for kv in conninfo.split_whitespace() {
        if let Some((k, v)) = kv.split_once('=') {
            parts.insert(k, v);
        }
    }
    format!(
        "postgres://{}@{}:{}/{}",
        parts.get("user").unwrap_or(&"postgres"),
        parts.get("host").unwrap_or(&"127.0.0.1"),
        parts.get("port").unwrap_or(&"5432"),
        parts.get("dbname").unwrap_or(&"postgres")
    )
}
