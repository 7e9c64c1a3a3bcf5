//! Scenario 8: a peer on the same machine. The same burn-down (pre-submitted backlog, 50
//! workers each claiming one item and completing it) on pgmq, installed from the pgmq crate's
//! embedded SQL into a database of its own, and on colony_assign.

use super::floor::{CLIENTS, Cycle, closed_loop, sql_cycles};
use crate::env::{Bench, connect, spec, spinner};
use crate::measure::{ms, rate, ratio};
use crate::report::{Section, Table};
use serde_json::json;
use std::sync::Arc;

pub async fn run(b: &Bench) -> Section {
    let backlog = b.size.peer_backlog;
    let duration = b.size.measure;
    let mut section = Section::new(
        "peer",
        "8. A peer on the same machine: pgmq",
        &format!(
            "Backlog of {backlog} items, {CLIENTS} workers, {}s each, same cluster and settings. pgmq {}: \
             `pgmq.read(queue, vt => 30, qty => 1)` then `pgmq.delete(queue, msg_id)`. colony_assign: `assign()` then \
             `close()`. Both SQL, prepared, autocommit.",
            duration.as_secs(),
            "0.34.0-alpha.7 crate (embedded SQL)"
        ),
    );
    let bar = spinner("peer: pgmq".into());
    let admin = b.admin().await;
    admin
        .batch_execute("DROP DATABASE IF EXISTS bench_pgmq WITH (FORCE)")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE bench_pgmq")
        .await
        .unwrap();
    let pgmq_conninfo = format!("{} dbname=bench_pgmq", b.conninfo);
    let url = conninfo_to_url(&pgmq_conninfo);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("sqlx pool for pgmq");
    pgmq::install::install_sql_from_embedded(&pool)
        .await
        .expect("install pgmq from the crate's embedded SQL");
    let version: String = sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'pgmq' UNION ALL SELECT 'sql-only' LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|_| "sql-only".into());
    pool.close().await;
    let client = connect(&pgmq_conninfo).await;
    client
        .batch_execute("SELECT pgmq.create('bench')")
        .await
        .unwrap();
    let mut left = backlog;
    while left > 0 {
        let n = left.min(10_000) as i32;
        client
            .execute("SELECT pgmq.send_batch('bench', (SELECT array_agg('{\"f\": 1}'::jsonb) FROM generate_series(1, $1)))", &[&n])
            .await
            .unwrap();
        left -= n as usize;
    }
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    let mut cycles: Vec<Cycle> = Vec::new();
    for _ in 0..CLIENTS {
        let c = Arc::new(connect(&pgmq_conninfo).await);
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
    let (pgmq_rate, pgmq_lat) = closed_loop(duration, cycles).await;
    admin
        .batch_execute("DROP DATABASE IF EXISTS bench_pgmq WITH (FORCE)")
        .await
        .unwrap();

    bar.set_message("peer: colony_assign");
    let db = b.fresh_db("peer").await;
    let names = db.executor_names(CLIENTS, "e", "t").await;
    db.submit_copies(&spec("t", None), backlog).await;
    db.vacuum().await;
    let (ours, our_lat) = closed_loop(duration, sql_cycles(&db.conninfo, &names).await).await;
    b.drop_db(&db).await;
    bar.finish_and_clear();

    let mut table = Table::new(
        "",
        &[
            "system",
            "claim + complete / s",
            "p50 ms",
            "p99 ms",
            "vs pgmq",
        ],
    );
    table.row(vec![
        format!("pgmq ({version})"),
        rate(pgmq_rate),
        ms(pgmq_lat.p(50.0)),
        ms(pgmq_lat.p(99.0)),
        "1.00".into(),
    ]);
    table.row(vec![
        "colony_assign".into(),
        rate(ours),
        ms(our_lat.p(50.0)),
        ms(our_lat.p(99.0)),
        ratio(ours / pgmq_rate),
    ]);
    section.tables.push(table);
    section.notes.push(
        "pgmq does far less per item: a queue table per queue, no executor types, locations, names, priorities, \
         deadlines, liveness or notifications, and a delete instead of a recorded result."
            .into(),
    );
    section.raw = json!({"pgmq": {"per_second": pgmq_rate, "latency": pgmq_lat.summary(), "version": version},
        "colony_assign": {"per_second": ours, "latency": our_lat.summary()}});
    section
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
