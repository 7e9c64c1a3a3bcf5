//! Scenario 3 (and issue 3's figures): submit-commit → executor-receives latency with idle
//! executors of one type at 4 locations over 3 replicas, for location-specific, location-less
//! and name-targeted processes submitted one at a time; wrong wakes counted by every replica.
//! The same for SQL-direct executors (LISTEN + assign), for comparison.

use crate::env::{
    Bench, HttpExecutor, Poll, Replica, SqlCycle, connect, connect_listening, spec, spinner, total,
};
use crate::measure::{Latencies, ms, rate};
use crate::report::{Section, Table, target};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Statement};

const LOCATIONS: [&str; 4] = ["edge", "cloud", "hpc", "lab"];
const REPLICAS: usize = 3;
const PER_LOCATION_PER_REPLICA: usize = 2;

struct Received {
    id: i64,
    at: Arrival,
    executor: String,
    location: Option<String>,
}

pub async fn run(b: &Bench) -> Section {
    let count = b.size.wake_count;
    let mut section = Section::new(
        "wakeup",
        "3. Wake-up latency: submit-commit to executor-receives",
        &format!(
            "{} idle executors of one type ({PER_LOCATION_PER_REPLICA} per location per replica, locations {LOCATIONS:?}) \
             long-poll {REPLICAS} replicas. {count} processes of each kind are submitted one at a time (the next only \
             after the previous was received and its executor parked again). Latency runs from the submit's commit \
             (`pg_xact_commit_timestamp` of its transaction: the dev cluster runs with `track_commit_timestamp = on`; \
             that time is taken just before the commit record is flushed) to the moment the executor has the \
             response, both on the machine's wall clock; the \"from submit sent\" column starts before the submit \
             statement is sent instead, so it also includes running the submit. \
             SQL-direct: one executor per location LISTENing on `channels()` and calling `assign()` on a notification; \
             run twice, with the submitter's `colony_assign.notify_relay` at its default (`on`: counts go through the \
             database's worker) and `off` (the committing transaction NOTIFYs itself), to show what the relay's extra \
             hop costs a lone submit.",
            LOCATIONS.len() * REPLICAS * PER_LOCATION_PER_REPLICA
        ),
    );
    let bar = spinner("wake-up: starting replicas and executors".into());
    let db = b.fresh_db("wakeup").await;
    let mut replicas = Vec::new();
    for r in 0..REPLICAS {
        replicas.push(Replica::start(b, &db, &format!("wake-{r}"), &[]).await);
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Received>();
    let mut executors = Vec::new();
    let mut names_by_location: Vec<(String, &str)> = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for location in LOCATIONS {
            for (name, token) in db
                .executors(
                    PER_LOCATION_PER_REPLICA,
                    &format!("{location}-r{r}-"),
                    "t",
                    Some(location),
                )
                .await
            {
                names_by_location.push((name.clone(), location));
                let executor = HttpExecutor::new(replica, &name, &token);
                let tx = tx.clone();
                executors.push(tokio::spawn(async move {
                    loop {
                        if let Poll::Got(processes) = executor.assign(30, 1).await {
                            for p in processes {
                                let id = p["id"].as_i64().unwrap();
                                let _ = tx.send(Received {
                                    id,
                                    at: Arrival::now(),
                                    executor: executor.name.clone(),
                                    location: p["location"].as_str().map(str::to_owned),
                                });
                                executor.close(id).await;
                            }
                        }
                    }
                }));
            }
        }
    }
    let parked_target = (LOCATIONS.len() * REPLICAS * PER_LOCATION_PER_REPLICA) as f64;
    let all_parked = || async {
        total(&replicas, "colony_parked_waiters", &[("kind", "location")]).await >= parked_target
    };
    wait_until(all_parked).await;

    let submitter = connect(&db.conninfo).await;
    let submit = prepare_submit(&submitter).await;
    let mut table = Table::new(
        "",
        &[
            "path",
            "kind",
            "processes",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p50 ms from submit sent",
            "wrong receiver",
        ],
    );
    let mut raw = serde_json::Map::new();
    let mut results = Vec::new();
    for kind in ["location", "broadcast", "named"] {
        bar.set_message(format!("wake-up: {kind} processes over HTTP"));
        let mut samples = Vec::new();
        let mut wrong_receiver = 0;
        for i in 0..count {
            let (conditions, expect_location, expect_name) = match kind {
                "location" => {
                    let l = LOCATIONS[i % LOCATIONS.len()];
                    (
                        json!({"executortype": "t", "locationname": l}),
                        Some(l),
                        None,
                    )
                }
                "broadcast" => (json!({"executortype": "t"}), None, None),
                _ => {
                    let (name, _) = &names_by_location[i % names_by_location.len()];
                    (
                        json!({"executortype": "t", "executornames": [name]}),
                        None,
                        Some(name.clone()),
                    )
                }
            };
            let spec: Value = json!({"funcname": "wake", "conditions": conditions});
            let (id, submitted) = submit_one(&submitter, &submit, &spec).await;
            let got = loop {
                let r = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .expect("received within 30 s")
                    .unwrap();
                if r.id == id {
                    break r;
                }
            };
            samples.push(submitted.arrived(got.at));
            if expect_location.is_some_and(|l| got.location.as_deref() != Some(l))
                || expect_name.as_ref().is_some_and(|n| *n != got.executor)
            {
                wrong_receiver += 1;
            }
            wait_until(all_parked).await;
        }
        let (latencies, from_sent) = latencies_of(&submitter, &samples).await;
        table.row(vec![
            "HTTP, 3 replicas".into(),
            kind.into(),
            count.to_string(),
            ms(latencies.p(50.0)),
            ms(latencies.p(99.0)),
            ms(latencies.max()),
            ms(from_sent.p(50.0)),
            wrong_receiver.to_string(),
        ]);
        raw.insert(format!("http_{kind}"), latencies.summary());
        results.push((kind, latencies, wrong_receiver));
    }
    let wrong_wakes = total(&replicas, "colony_wrong_wakes_total", &[]).await;
    let lost_races = total(
        &replicas,
        "colony_wake_outcomes_total",
        &[("outcome", "lost_race")],
    )
    .await;
    let notifications = total(&replicas, "colony_notifications_received_total", &[]).await;
    for e in executors {
        e.abort();
    }
    for r in replicas {
        r.stop().await;
    }

    bar.set_message("wake-up: SQL-direct executors");
    let sql = sql_direct(&db, count).await;
    for (relay, from_commit, from_sent) in &sql {
        let path = if *relay == "on" {
            "SQL-direct (LISTEN + assign)".to_owned()
        } else {
            format!("SQL-direct, submitter with notify_relay = {relay}")
        };
        table.row(vec![
            path,
            "location".into(),
            count.to_string(),
            ms(from_commit.p(50.0)),
            ms(from_commit.p(99.0)),
            ms(from_commit.max()),
            ms(from_sent.p(50.0)),
            "0".into(),
        ]);
        raw.insert(
            format!("sql_direct_location_relay_{relay}"),
            from_commit.summary(),
        );
    }
    bar.finish_and_clear();

    section.tables.push(table);
    let mut counts = Table::new(
        "Wake accounting over the HTTP runs, summed over the replicas:",
        &[
            "notifications received",
            "wrong wakes",
            "lost races (woken, another executor was faster)",
        ],
    );
    counts.row(vec![
        rate(notifications),
        rate(wrong_wakes),
        rate(lost_races),
    ]);
    section.tables.push(counts);
    for (kind, latencies, wrong) in &results {
        section.targets.push(target(
            &format!("{kind}: p50"),
            "<= 2 ms",
            format!("{} ms", ms(latencies.p(50.0))),
            latencies.p(50.0) <= 2.0,
        ));
        section.targets.push(target(
            &format!("{kind}: p99"),
            "<= 10 ms",
            format!("{} ms", ms(latencies.p(99.0))),
            latencies.p(99.0) <= 10.0,
        ));
        section.targets.push(target(
            &format!("{kind}: received by a wrong executor"),
            "0",
            wrong.to_string(),
            *wrong == 0,
        ));
    }
    section.targets.push(target(
        "wrong wakes (all kinds, all replicas)",
        "0",
        rate(wrong_wakes),
        wrong_wakes == 0.0,
    ));
    raw.insert("wrong_wakes".into(), json!(wrong_wakes));
    raw.insert("lost_races".into(), json!(lost_races));
    raw.insert("notifications".into(), json!(notifications));
    section.raw = Value::Object(raw);
    b.drop_db(&db).await;
    section
}

async fn wait_until<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "benchmark condition not reached within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// SQL-direct executors (one per location, type "s"): LISTEN, assign, wait for a notification.
async fn sql_direct(
    db: &crate::env::Db,
    count: usize,
) -> Vec<(&'static str, Latencies, Latencies)> {
    let executors = {
        let mut all = Vec::new();
        for location in LOCATIONS {
            all.extend(
                db.executors(1, &format!("sql-{location}-"), "s", Some(location))
                    .await
                    .into_iter()
                    .map(|(n, _)| (n, location)),
            );
        }
        all
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, Arrival)>();
    // How many executors are waiting for a notification right now.
    let parked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (name, _) in &executors {
        let (conninfo, name, tx, parked) = (
            db.conninfo.clone(),
            name.clone(),
            tx.clone(),
            parked.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (client, mut notifications) = connect_listening(&conninfo).await;
            for row in client
                .query("SELECT colony_assign.channels('bench', $1)", &[&name])
                .await
                .unwrap()
            {
                let channel: String = row.get(0);
                client
                    .batch_execute(&format!("LISTEN \"{channel}\""))
                    .await
                    .unwrap();
            }
            let SqlCycle { assign, close } = SqlCycle::prepare(&client).await;
            loop {
                let rows = client.query(&assign, &[&name]).await.unwrap();
                if rows.is_empty() {
                    parked.fetch_add(1, Ordering::SeqCst);
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), notifications.recv()).await;
                    parked.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                for row in rows {
                    let id: i64 = row.get(0);
                    let _ = tx.send((id, Arrival::now()));
                    client.execute(&close, &[&id, &name]).await.unwrap();
                }
            }
        }));
    }
    let all_parked = || async { parked.load(Ordering::SeqCst) == executors.len() };
    let mut results = Vec::new();
    // The same executors, submitted to by a session with the relay (the default) and by one
    // without: what the worker's hop costs a lone submit.
    for relay in ["on", "off"] {
        let submitter = connect(&format!(
            "{} options='-c colony_assign.notify_relay={relay}'",
            db.conninfo
        ))
        .await;
        let submit = prepare_submit(&submitter).await;
        let mut samples = Vec::new();
        for i in 0..count {
            wait_until(all_parked).await;
            let spec = spec("s", Some(LOCATIONS[i % LOCATIONS.len()]));
            let (id, submitted) = submit_one(&submitter, &submit, &spec).await;
            loop {
                let (got, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .expect("received")
                    .unwrap();
                if got == id {
                    samples.push(submitted.arrived(at));
                    break;
                }
            }
        }
        let (from_commit, from_sent) = latencies_of(&submitter, &samples).await;
        results.push((relay, from_commit, from_sent));
    }
    for t in tasks {
        t.abort();
    }
    results
}

/// A moment on both clocks: monotonic for spans within this process, wall time to compare
/// with PostgreSQL's commit timestamps.
#[derive(Clone, Copy)]
struct Arrival {
    instant: Instant,
    wall: SystemTime,
}

impl Arrival {
    fn now() -> Arrival {
        Arrival {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// One submit on its way: when it was sent and acknowledged, and its transaction.
struct Submitted {
    sent: Instant,
    acknowledged: Instant,
    xid: String,
}

struct Sample {
    submitted: Submitted,
    arrival: Arrival,
}

impl Submitted {
    fn arrived(self, arrival: Arrival) -> Sample {
        Sample {
            submitted: self,
            arrival,
        }
    }
}

async fn prepare_submit(client: &Client) -> Statement {
    client
        .prepare("SELECT colony_assign.submit('bench', $1), pg_current_xact_id()::text")
        .await
        .unwrap()
}

async fn submit_one(client: &Client, submit: &Statement, spec: &Value) -> (i64, Submitted) {
    let sent = Instant::now();
    let row = client.query_one(submit, &[spec]).await.unwrap();
    let acknowledged = Instant::now();
    (
        row.get(0),
        Submitted {
            sent,
            acknowledged,
            xid: row.get(1),
        },
    )
}

/// Latencies from each submit's commit, and from the moment it was sent. The commit moment is
/// PostgreSQL's commit timestamp when `track_commit_timestamp` is on; without it, the moment
/// the submit was acknowledged (which is after the commit, so those figures are a little low).
async fn latencies_of(client: &Client, samples: &[Sample]) -> (Latencies, Latencies) {
    let mut from_commit = Latencies::default();
    let mut from_sent = Latencies::default();
    let tracked: String = client
        .query_one("SHOW track_commit_timestamp", &[])
        .await
        .unwrap()
        .get(0);
    let committed_us: Option<Vec<i64>> = if tracked == "on" {
        let xids: Vec<&str> = samples.iter().map(|s| s.submitted.xid.as_str()).collect();
        let rows = client
            .query(
                "SELECT (extract(epoch FROM pg_xact_commit_timestamp(x::xid)) * 1000000)::bigint \
                 FROM unnest($1::text[]) WITH ORDINALITY AS u(x, i) ORDER BY i",
                &[&xids],
            )
            .await
            .unwrap();
        Some(rows.iter().map(|r| r.get(0)).collect())
    } else {
        None
    };
    for (i, sample) in samples.iter().enumerate() {
        let arrival = sample.arrival;
        from_sent.record(arrival.instant.duration_since(sample.submitted.sent));
        match &committed_us {
            Some(committed) => {
                let arrived_us = arrival
                    .wall
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_micros() as i64;
                from_commit.record(Duration::from_micros(
                    (arrived_us - committed[i]).max(0) as u64
                ));
            }
            None => from_commit.record(
                arrival
                    .instant
                    .duration_since(sample.submitted.acknowledged),
            ),
        }
    }
    (from_commit, from_sent)
}
