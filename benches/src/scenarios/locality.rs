//! Scenario 10: local-first placement (issue 12; the Jido seed's "90% local execution").
//! Executors at four locations; processes prefer one of them with skewed weights. While the
//! preferred location has capacity, the process should run there; when it has none, the
//! process should start elsewhere as soon as its `localitywait` is over.

use crate::env::{Bench, connect_listening, spinner};
use crate::measure::{Latencies, ms, ratio};
use crate::report::{Section, Table, target};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const LOCATIONS: [&str; 4] = ["edge-a", "edge-b", "cloud", "hpc"];
/// Share of submissions preferring each location (skewed).
const WEIGHTS: [usize; 4] = [40, 30, 20, 10];
const PER_LOCATION: usize = 3;
/// How long an executor works on a process.
const WORK: Duration = Duration::from_millis(20);

pub async fn run(b: &Bench) -> Section {
    let n = b.size.locality_processes;
    let wait_s = 2;
    let mut section = Section::new(
        "locality",
        "10. Local-first placement",
        &format!(
            "{} SQL-direct executors, {PER_LOCATION} at each of {} locations, each working {} ms per process and \
             waiting on its channels (LISTEN, 1 s timeout) when idle. With capacity: {n} processes submitted at about \
             half the executors' capacity, preferring the locations {WEIGHTS:?} percent of the time, \
             `localitywait` {wait_s} s; a process counts as local when the executor that ran it is at its preferred \
             location. Without capacity: the executors of `{}` are stopped, and {} processes preferring it are \
             submitted with `localitywait` 1 s; the delay is from the end of each wait (submitted + 1 s) to its start.",
            PER_LOCATION * LOCATIONS.len(),
            LOCATIONS.len(),
            WORK.as_millis(),
            LOCATIONS[0],
            n / 10
        ),
    );
    let bar = spinner("locality: with capacity".into());
    let db = b.fresh_db("locality").await;
    let client = db.client().await;
    let mut names = Vec::new();
    for location in LOCATIONS {
        for i in 0..PER_LOCATION {
            let name = format!("{location}-{i}");
            client
                .execute(
                    "SELECT colony_assign.add_executor('bench', $1, 't', $2)",
                    &[&name, &location],
                )
                .await
                .unwrap();
            names.push((name, location));
        }
    }
    let stop_all = Arc::new(AtomicBool::new(false));
    let stop_first = Arc::new(AtomicBool::new(false));
    let mut executors = Vec::new();
    for (name, location) in &names {
        let stop = if *location == LOCATIONS[0] {
            stop_first.clone()
        } else {
            stop_all.clone()
        };
        executors.push(tokio::spawn(executor(
            db.conninfo.clone(),
            name.clone(),
            stop,
            stop_all.clone(),
        )));
    }

    // With capacity: about half of what the executors can do (12 × 50/s = 600/s → 300/s).
    let capacity_per_s = (names.len() as f64) * (1000.0 / WORK.as_millis() as f64);
    let gap = Duration::from_secs_f64(2.0 / capacity_per_s);
    let mut first_ids = Vec::with_capacity(n);
    for i in 0..n {
        let location = weighted(i);
        let spec = preferring(location, wait_s);
        first_ids.push(submit(&client, &spec).await);
        tokio::time::sleep(gap).await; // the load's pace, not an ordering between events
    }
    wait_finished(&client, &first_ids).await;
    let local: (i64, i64) = {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE e.location = p.preferred_location), count(*)
                 FROM colony_assign.processes p
                 JOIN colony_assign.executors e ON e.colony = p.colony AND e.name = p.assigned_executor
                 WHERE p.id = ANY ($1)",
                &[&first_ids],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let local_share = local.0 as f64 / local.1.max(1) as f64;

    // Without capacity at the preferred location.
    bar.set_message("locality: preferred location down");
    stop_first.store(true, Ordering::Release);
    let busy = n / 10;
    let mut second_ids = Vec::with_capacity(busy);
    for _ in 0..busy {
        second_ids.push(submit(&client, &preferring(LOCATIONS[0], 1)).await);
        tokio::time::sleep(gap).await;
    }
    wait_finished(&client, &second_ids).await;
    let mut delays = Latencies::default();
    for row in client
        .query(
            "SELECT extract(epoch FROM p.started_at - (p.submitted_at + interval '1 s'))::float8
             FROM colony_assign.processes p WHERE p.id = ANY ($1)",
            &[&second_ids],
        )
        .await
        .unwrap()
    {
        let seconds: f64 = row.get(0);
        delays.record(Duration::from_secs_f64(seconds.max(0.0)));
    }
    stop_all.store(true, Ordering::Release);
    for e in executors {
        let _ = e.await;
    }
    b.drop_db(&db).await;
    bar.finish_and_clear();

    let mut table = Table::new(
        "",
        &[
            "phase",
            "processes",
            "ran at the preferred location",
            "start after the wait, p50 ms",
            "p99 ms",
        ],
    );
    table.row(vec![
        "preferred location has capacity".into(),
        local.1.to_string(),
        format!("{:.1}%", local_share * 100.0),
        "-".into(),
        "-".into(),
    ]);
    table.row(vec![
        format!("{} stopped", LOCATIONS[0]),
        delays.count().to_string(),
        "0% (by construction)".into(),
        ms(delays.p(50.0)),
        ms(delays.p(99.0)),
    ]);
    section.tables.push(table);
    section.targets.push(target(
        "run at the preferred location while it has capacity",
        ">= 95%",
        format!("{:.1}%", local_share * 100.0),
        local_share >= 0.95,
    ));
    let p99 = delays.p(99.0);
    section.targets.push(target(
        "start elsewhere after localitywait when it has none, p99",
        "<= 100 ms after the wait",
        format!("{} ms", ms(p99)),
        delays.count() > 0 && p99 <= 100.0,
    ));
    section.raw = json!({"local": local.0, "placed": local.1, "local_share": ratio(local_share),
        "fallback_delay": delays.summary()});
    section
}

fn weighted(i: usize) -> &'static str {
    let mut slot = (i * 37) % 100;
    for (location, weight) in LOCATIONS.iter().zip(WEIGHTS) {
        if slot < weight {
            return location;
        }
        slot -= weight;
    }
    LOCATIONS[0]
}

fn preferring(location: &str, wait_s: u32) -> Value {
    json!({"funcname": "bench", "maxexectime": 300,
           "conditions": {"executortype": "t", "preferredlocation": location, "localitywait": wait_s}})
}

async fn submit(client: &tokio_postgres::Client, spec: &Value) -> i64 {
    client
        .query_one("SELECT colony_assign.submit('bench', $1)", &[spec])
        .await
        .unwrap()
        .get(0)
}

/// Waits until every process in `ids` finished.
async fn wait_finished(client: &tokio_postgres::Client, ids: &[i64]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM colony_assign.processes WHERE id = ANY ($1) AND state < 2",
                &[&ids],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} processes still unfinished after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A SQL-direct executor: LISTEN on its channels, assign, work, close; wait for a
/// notification (at most 1 s) when there is nothing.
async fn executor(
    conninfo: String,
    name: String,
    stop: Arc<AtomicBool>,
    stop_all: Arc<AtomicBool>,
) {
    let (client, mut notifications) = connect_listening(&conninfo).await;
    let channels: Vec<String> = client
        .query("SELECT colony_assign.channels('bench', $1)", &[&name])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for channel in &channels {
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .await
            .unwrap();
    }
    let assign = client
        .prepare("SELECT id FROM colony_assign.assign('bench', $1)")
        .await
        .unwrap();
    let close = client
        .prepare("SELECT colony_assign.close($1, $2)")
        .await
        .unwrap();
    while !stop.load(Ordering::Acquire) && !stop_all.load(Ordering::Acquire) {
        match client.query_opt(&assign, &[&name]).await.unwrap() {
            Some(row) => {
                let id: i64 = row.get(0);
                tokio::time::sleep(WORK).await; // the work itself
                client.execute(&close, &[&id, &name]).await.unwrap();
            }
            None => {
                let _ = tokio::time::timeout(Duration::from_secs(1), notifications.recv()).await;
            }
        }
    }
}
