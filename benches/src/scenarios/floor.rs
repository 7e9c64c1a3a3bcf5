//! Scenario 2 (and issue 2's figure): assign+close cycles per second at 50 clients on a deep
//! queue, next to the floor of two bare single-row UPDATE commits per cycle, and HTTP through
//! one replica next to SQL-direct.

use crate::env::{Bench, HttpExecutor, Poll, Replica, SqlCycle, connect, spec, spinner};
use crate::measure::{Latencies, ms, rate, ratio};
use crate::report::{Section, Table, target};
use futures_util::future::BoxFuture;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const CLIENTS: usize = 50;

/// One client's work: each call performs one cycle and says whether it completed.
pub type Cycle = Box<dyn FnMut() -> BoxFuture<'static, bool> + Send>;

/// Runs every cycle in a closed loop for `duration`; returns (completed cycles/s, latencies).
pub async fn closed_loop(duration: Duration, cycles: Vec<Cycle>) -> (f64, Latencies) {
    let (per_second, latencies, _) = closed_loop_keeping(duration, cycles).await;
    (per_second, latencies)
}

/// As `closed_loop`, handing the cycles (and their connections) back for the next window.
pub async fn closed_loop_keeping(
    duration: Duration,
    cycles: Vec<Cycle>,
) -> (f64, Latencies, Vec<Cycle>) {
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for mut cycle in cycles {
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let mut latencies = Latencies::default();
            while start.elapsed() < duration {
                let t0 = Instant::now();
                if cycle().await {
                    latencies.record(t0.elapsed());
                }
            }
            (latencies, cycle)
        }));
    }
    let mut all = Latencies::default();
    let mut back = Vec::new();
    for t in tasks {
        let (latencies, cycle) = t.await.unwrap();
        all.merge(&latencies);
        back.push(cycle);
    }
    (all.count() as f64 / duration.as_secs_f64(), all, back)
}

/// SQL-direct executor cycles: prepared assign(), then close() of what it got.
pub async fn sql_cycles(conninfo: &str, names: &[String]) -> Vec<Cycle> {
    let mut cycles: Vec<Cycle> = Vec::new();
    for name in names {
        let client = Arc::new(connect(conninfo).await);
        let SqlCycle { assign, close } = SqlCycle::prepare(&client).await;
        let name = name.clone();
        cycles.push(Box::new(move || {
            let (client, assign, close, name) =
                (client.clone(), assign.clone(), close.clone(), name.clone());
            Box::pin(async move {
                match client.query_opt(&assign, &[&name]).await {
                    Ok(Some(row)) => {
                        let id: i64 = row.get(0);
                        client.execute(&close, &[&id, &name]).await.is_ok()
                    }
                    _ => false,
                }
            })
        }));
    }
    cycles
}

/// `clients` connections each doing two autocommit single-row UPDATEs (HOT, an unindexed
/// column) per cycle on the `floor` table of `waiting` rows, each client on its own rows.
async fn floor_cycles(conninfo: &str, clients: usize, waiting: usize) -> Vec<Cycle> {
    let mut cycles: Vec<Cycle> = Vec::new();
    for i in 0..clients {
        let client = Arc::new(connect(conninfo).await);
        let update = client
            .prepare("UPDATE floor SET state = $2 WHERE id = $1")
            .await
            .unwrap();
        let mut next = (i * (waiting / clients)) as i32;
        cycles.push(Box::new(move || {
            next = next % waiting as i32 + 1;
            let (client, update, id) = (client.clone(), update.clone(), next);
            Box::pin(async move {
                client.execute(&update, &[&id, &1i32]).await.is_ok()
                    && client.execute(&update, &[&id, &2i32]).await.is_ok()
            })
        }));
    }
    cycles
}

pub async fn run(b: &Bench) -> Section {
    let waiting = b.size.floor_waiting;
    let duration = b.size.measure;
    let mut section = Section::new(
        "floor",
        "2. Assign+close against the floor",
        &format!(
            "{CLIENTS} clients, {waiting} waiting processes, {}s per row, all in one run. Floor: two autocommit \
             `UPDATE floor SET state = $2 WHERE id = $1` per cycle (HOT updates of an unindexed column) on a \
             {waiting}-row table in the same database. SQL-direct: prepared `assign()` then `close()`. HTTP: the \
             same cycle as long-poll + close through one coordinator replica.",
            duration.as_secs()
        ),
    );
    let bar = spinner("floor: loading".into());
    let db = b.fresh_db("floor").await;
    let executors = db.executors(CLIENTS, "e", "t", None).await;
    db.submit_copies(&spec("t", None), waiting).await;
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE floor (id integer PRIMARY KEY, state integer NOT NULL DEFAULT 0);
             INSERT INTO floor (id) SELECT generate_series(1, {waiting});"
        ))
        .await
        .unwrap();
    db.vacuum().await;
    client.batch_execute("VACUUM ANALYZE floor").await.unwrap();

    bar.set_message("floor: bare UPDATE pairs");
    let cycles = floor_cycles(&db.conninfo, CLIENTS, waiting).await;
    let (floor, floor_lat) = closed_loop(duration, cycles).await;

    bar.set_message("floor: SQL-direct assign + close");
    let names: Vec<String> = executors.iter().map(|(n, _)| n.clone()).collect();
    let (sql, sql_lat) = closed_loop(duration, sql_cycles(&db.conninfo, &names).await).await;

    // Untimed: the HTTP and one-client rows run on as deep a queue as the SQL-direct row did.
    bar.set_message("floor: topping up the queue");
    db.submit_copies(&spec("t", None), waiting).await;
    db.vacuum().await;

    bar.set_message("floor: HTTP through one replica");
    let replica = Replica::start(b, &db, "floor-0", &[]).await;
    let mut cycles: Vec<Cycle> = Vec::new();
    for (name, token) in &executors {
        let executor = HttpExecutor::new(&replica, name, token);
        cycles.push(Box::new(move || {
            let executor = executor.clone();
            Box::pin(async move {
                match executor.assign(1, 1).await {
                    Poll::Got(p) if !p.is_empty() => {
                        executor.close(p[0]["id"].as_i64().unwrap()).await
                    }
                    _ => false,
                }
            })
        }));
    }
    let (http, http_lat) = closed_loop(duration, cycles).await;
    replica.stop().await;

    // One client: latency, where the commit's WAL flush is most of a cycle.
    bar.set_message("floor: one client");
    let (_, floor_one) = closed_loop(duration, floor_cycles(&db.conninfo, 1, waiting).await).await;
    let (_, sql_one) = closed_loop(duration, sql_cycles(&db.conninfo, &names[..1]).await).await;
    bar.finish_and_clear();

    let mut table = Table::new("", &["cycle", "cycles/s", "p50 ms", "p99 ms", "ratio"]);
    table.row(vec![
        "floor: 2 bare UPDATE commits".into(),
        rate(floor),
        ms(floor_lat.p(50.0)),
        ms(floor_lat.p(99.0)),
        "1.00".into(),
    ]);
    table.row(vec![
        "SQL-direct assign + close".into(),
        rate(sql),
        ms(sql_lat.p(50.0)),
        ms(sql_lat.p(99.0)),
        format!("{} of floor", ratio(sql / floor)),
    ]);
    table.row(vec![
        "HTTP (1 replica) assign + close".into(),
        rate(http),
        ms(http_lat.p(50.0)),
        ms(http_lat.p(99.0)),
        format!("{} of SQL-direct", ratio(http / sql)),
    ]);
    section.tables.push(table);
    let one = sql_one.mean() / floor_one.mean();
    let mut single = Table::new(
        "One client, same run: mean cycle latency (each cycle is two commits, each waiting for its WAL flush).",
        &["cycle", "mean ms", "p50 ms", "p99 ms", "ratio"],
    );
    single.row(vec![
        "floor: 2 bare UPDATE commits".into(),
        ms(floor_one.mean()),
        ms(floor_one.p(50.0)),
        ms(floor_one.p(99.0)),
        "1.00".into(),
    ]);
    single.row(vec![
        "SQL-direct assign + close".into(),
        ms(sql_one.mean()),
        ms(sql_one.p(50.0)),
        ms(sql_one.p(99.0)),
        format!("{}x the floor", ratio(one)),
    ]);
    section.tables.push(single);
    section.targets.push(target(
        "SQL-direct / floor, 50 clients",
        ">= 0.45 (goal 0.60)",
        ratio(sql / floor),
        sql / floor >= 0.45,
    ));
    section.targets.push(target(
        "SQL-direct cycle latency / floor's, 1 client",
        "<= 1.3x",
        format!("{}x", ratio(one)),
        sql_one.count() > 0 && one <= 1.3,
    ));
    section.targets.push(target(
        "HTTP (1 replica) / SQL-direct",
        ">= 0.50",
        ratio(http / sql),
        http / sql >= 0.5,
    ));
    section.raw = json!({"floor": floor, "sql_direct": sql, "http": http,
        "one_client": {"floor": floor_one.summary(), "sql_direct": sql_one.summary()},
        "floor_latency": floor_lat.summary(), "sql_latency": sql_lat.summary(), "http_latency": http_lat.summary()});
    b.drop_db(&db).await;
    section
}
