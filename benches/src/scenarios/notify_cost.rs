//! Scenario 4: what notifying costs submitters. Single-process submits at 50 clients with
//! nobody listening vs with listeners (three LISTEN connections, as three coordinator
//! replicas hold), next to a bare INSERT and an INSERT + pg_notify in the same cluster.

use super::floor::{CLIENTS, Cycle, closed_loop};
use crate::env::{Bench, connect, connect_listening, spinner};
use crate::measure::{rate, ratio};
use crate::report::{Section, Table, target};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub async fn run(b: &Bench) -> Section {
    let duration = b.size.measure;
    let mut section = Section::new(
        "notify",
        "4. The cost of NOTIFY to submitters",
        &format!(
            "{CLIENTS} clients, each committing one single-process `submit()` per transaction, {}s per row. \
             PostgreSQL serializes every committing transaction that issued NOTIFY (a cluster-wide lock held through \
             the commit's WAL flush), so an INSERT + pg_notify commits at about half the rate of a bare INSERT; the \
             reference rows measure exactly that here. \"Listening\" = three connections LISTENing on the key the \
             processes notify (as three coordinator replicas would).",
            duration.as_secs()
        ),
    );
    let bar = spinner("notify cost: none listening".into());
    let db = b.fresh_db("notify").await;
    let setup = db.client().await;
    setup
        .batch_execute("CREATE TABLE ref_items (id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
        .await
        .unwrap();
    let spec = json!({"funcname": "f", "conditions": {"executortype": "n"}});

    async fn submit_cycles(conninfo: &str, spec: &serde_json::Value) -> Vec<Cycle> {
        let mut cycles: Vec<Cycle> = Vec::new();
        for _ in 0..CLIENTS {
            let client = Arc::new(connect(conninfo).await);
            let submit = client
                .prepare("SELECT colony_assign.submit('bench', $1)")
                .await
                .unwrap();
            let spec = spec.clone();
            cycles.push(Box::new(move || {
                let (client, submit, spec) = (client.clone(), submit.clone(), spec.clone());
                Box::pin(async move { client.query_one(&submit, &[&spec]).await.is_ok() })
            }));
        }
        cycles
    }
    async fn sql_cycles(conninfo: &str, sql: &'static str) -> Vec<Cycle> {
        let mut cycles: Vec<Cycle> = Vec::new();
        for _ in 0..CLIENTS {
            let client = Arc::new(connect(conninfo).await);
            cycles.push(Box::new(move || {
                let client = client.clone();
                Box::pin(async move { client.batch_execute(sql).await.is_ok() })
            }));
        }
        cycles
    }

    let (alone, _) = closed_loop(duration, submit_cycles(&db.conninfo, &spec).await).await;

    bar.set_message("notify cost: three listeners");
    let channel = colony_proto::Key::Broadcast {
        colony: "bench",
        executor_type: "n",
    }
    .channel();
    let received = Arc::new(AtomicU64::new(0));
    let mut listeners = Vec::new();
    for _ in 0..3 {
        let (client, mut notifications) = connect_listening(&db.conninfo).await;
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .await
            .unwrap();
        let received = received.clone();
        listeners.push(tokio::spawn(async move {
            let _keep = client;
            while notifications.recv().await.is_some() {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let (listened, _) = closed_loop(duration, submit_cycles(&db.conninfo, &spec).await).await;
    let notifications = received.load(Ordering::Relaxed) / 3;
    for l in listeners {
        l.abort();
    }

    bar.set_message("notify cost: references");
    let (bare, _) = closed_loop(
        duration,
        sql_cycles(
            &db.conninfo,
            "INSERT INTO ref_items (payload) VALUES ('{}')",
        )
        .await,
    )
    .await;
    let (with_notify, _) = closed_loop(
        duration,
        sql_cycles(&db.conninfo, "BEGIN; INSERT INTO ref_items (payload) VALUES ('{}'); SELECT pg_notify('ref', '1'); COMMIT").await,
    )
    .await;
    bar.finish_and_clear();

    let mut table = Table::new("", &["workload", "commits/s", "vs bare INSERT"]);
    table.row(vec![
        "reference: bare INSERT".into(),
        rate(bare),
        "1.00".into(),
    ]);
    table.row(vec![
        "reference: INSERT + pg_notify".into(),
        rate(with_notify),
        ratio(with_notify / bare),
    ]);
    table.row(vec![
        "submit(), nobody listening".into(),
        rate(alone),
        ratio(alone / bare),
    ]);
    table.row(vec![
        "submit(), 3 listeners".into(),
        rate(listened),
        ratio(listened / bare),
    ]);
    section.tables.push(table);
    section.notes.push(format!(
        "While listened to, {} submits produced {notifications} notifications per listener.",
        (listened * duration.as_secs_f64()) as u64
    ));
    section.targets.push(target(
        "submit throughput, listening / nobody listening",
        ">= 0.90",
        ratio(listened / alone),
        listened / alone >= 0.9,
    ));
    section.raw = json!({"bare_insert": bare, "insert_notify": with_notify, "submit_alone": alone,
        "submit_listened": listened, "notifications_per_listener": notifications});
    b.drop_db(&db).await;
    section
}
