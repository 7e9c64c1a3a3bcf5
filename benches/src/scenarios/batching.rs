//! Scenario 5: batching (the Jido seed's targets). The same processes through one replica,
//! one message per process vs batched submit, assign (max 10) and close.

use crate::env::{Bench, HttpExecutor, Poll, Replica, ids, spinner};
use crate::measure::{Latencies, ms, rate, ratio};
use crate::report::{Section, Table, target};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const EXECUTORS: usize = 10;
const SUBMITTERS: usize = 10;

struct Run {
    seconds: f64,
    http: u64,
    sql: f64,
    notifications: f64,
    formation: Latencies,
    assign: Latencies,
}

pub async fn run(b: &Bench) -> Section {
    let n = b.size.batch_processes;
    let mut section = Section::new(
        "batching",
        "5. Batching: messages and throughput",
        &format!(
            "{n} processes through one replica with {EXECUTORS} executors. One at a time: {SUBMITTERS} submitters POST \
             one spec each, executors long-poll with max=1 and close each process with its own request. Batched: specs \
             POSTed 500 per request, executors long-poll with max=10 and close what they got with one \
             `POST /v1/processes/close`. Messages = HTTP requests (counted by the client) + SQL round trips (the \
             replica's `colony_db_queries_total`) + NOTIFYs (the replica's notifications received). Batch formation = \
             from a batch's arrival to its close request being ready to send."
        ),
    );
    let single = one_run(b, false, n).await;
    let batched = one_run(b, true, n).await;
    let drained = drain_run(b).await;
    let messages = |r: &Run| r.http as f64 + r.sql + r.notifications;
    let reduction = 1.0 - messages(&batched) / messages(&single);
    let speedup = single.seconds / batched.seconds;
    let mut table = Table::new(
        "",
        &[
            "mode",
            "processes/s",
            "HTTP requests",
            "SQL round trips",
            "NOTIFYs",
            "messages",
            "assign p50 ms",
        ],
    );
    for (name, r) in [("one at a time", &single), ("batched", &batched)] {
        table.row(vec![
            name.into(),
            rate(n as f64 / r.seconds),
            r.http.to_string(),
            rate(r.sql),
            rate(r.notifications),
            rate(messages(r)),
            ms(r.assign.p(50.0)),
        ]);
    }
    section.tables.push(table);
    let mut drain = Table::new(
        &format!(
            "Draining a pre-submitted backlog through one replica: {EXECUTORS} executors each run {} rounds of a \
             long-poll with max={DRAIN_BATCH} and one `POST /v1/processes/close` of what it got.",
            b.size.drain_rounds
        ),
        &[
            "processes",
            "seconds",
            "processes/s",
            "round p50 ms",
            "round p99 ms",
        ],
    );
    drain.row(vec![
        drained.processes.to_string(),
        format!("{:.2}", drained.seconds),
        rate(drained.processes as f64 / drained.seconds),
        ms(drained.rounds.p(50.0)),
        ms(drained.rounds.p(99.0)),
    ]);
    section.tables.push(drain);
    let drain_rate = drained.processes as f64 / drained.seconds;
    section.targets.push(target(
        "HTTP drain through one replica (max=100, batched close)",
        ">= 25,000 processes/s",
        rate(drain_rate),
        drain_rate >= 25_000.0,
    ));
    section.targets.push(target(
        "fewer messages, batched vs one at a time",
        ">= 70%",
        format!("{:.0}%", reduction * 100.0),
        reduction >= 0.7,
    ));
    section.targets.push(target(
        "throughput, batched / one at a time",
        ">= 3x",
        format!("{}x", ratio(speedup)),
        speedup >= 3.0,
    ));
    let formation = batched.formation.p(99.0);
    section.targets.push(target(
        "batch formation overhead, p99",
        "< 1 ms",
        format!("{} ms", ms(formation)),
        formation < 1.0,
    ));
    section.raw = json!({"drain": {"processes": drained.processes, "seconds": drained.seconds, "rounds": drained.rounds.summary()},
        "single": {"seconds": single.seconds, "http": single.http, "sql": single.sql, "notifications": single.notifications},
        "batched": {"seconds": batched.seconds, "http": batched.http, "sql": batched.sql, "notifications": batched.notifications,
                    "formation": batched.formation.summary()}});
    section
}

/// Processes per long-poll in the drain run.
const DRAIN_BATCH: u32 = 100;

struct Drained {
    processes: usize,
    seconds: f64,
    rounds: Latencies,
}

/// A backlog drained through one replica by executors taking 100 at a time.
async fn drain_run(b: &Bench) -> Drained {
    let bar = spinner("batching: HTTP drain".into());
    let rounds = b.size.drain_rounds;
    let backlog = EXECUTORS * rounds * DRAIN_BATCH as usize;
    let db = b.fresh_db("batching_drain").await;
    let executors = db.executors(EXECUTORS, "e", "t", None).await;
    db.submit_copies(&crate::env::spec("t", None), backlog)
        .await;
    db.vacuum().await;
    let replica = Replica::start(b, &db, "batch-drain", &[]).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (name, token) in &executors {
        let executor = HttpExecutor::new(&replica, name, token);
        tasks.push(tokio::spawn(async move {
            let (mut latency, mut processes) = (Latencies::default(), 0);
            for _ in 0..rounds {
                let t0 = Instant::now();
                let Poll::Got(got) = executor.assign(1, DRAIN_BATCH).await else {
                    continue;
                };
                let body: Vec<Value> = ids(&got).iter().map(|id| json!({"id": id})).collect();
                let closed = executor
                    .http
                    .post(format!("{}/v1/processes/close", executor.base))
                    .bearer_auth(&executor.token)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if closed {
                    latency.record(t0.elapsed());
                    processes += got.len();
                }
            }
            (latency, processes)
        }));
    }
    let (mut latency, mut processes) = (Latencies::default(), 0);
    for t in tasks {
        let (l, p) = t.await.unwrap();
        latency.merge(&l);
        processes += p;
    }
    let seconds = started.elapsed().as_secs_f64();
    replica.stop().await;
    b.drop_db(&db).await;
    bar.finish_and_clear();
    Drained {
        processes,
        seconds,
        rounds: latency,
    }
}

async fn one_run(b: &Bench, batched: bool, n: usize) -> Run {
    let mode = if batched { "batched" } else { "single" };
    let bar = spinner(format!("batching: {mode}"));
    let db = b.fresh_db(&format!("batching_{mode}")).await;
    let executors = db.executors(EXECUTORS, "e", "t", None).await;
    let replica = Replica::start(b, &db, &format!("batch-{mode}"), &[]).await;
    let http_requests = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let sql_before = replica.metric("colony_db_queries_total", &[]).await;
    let notify_before = replica
        .metric("colony_notifications_received_total", &[])
        .await;
    let max = if batched { 10 } else { 1 };
    let finished = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut tasks = Vec::new();
    for (name, token) in &executors {
        let executor = HttpExecutor::new(&replica, name, token);
        let (requests, done, finished) = (http_requests.clone(), done.clone(), finished.clone());
        tasks.push(tokio::spawn(async move {
            let (mut formation, mut assign) = (Latencies::default(), Latencies::default());
            while done.load(Ordering::Acquire) < n {
                let t0 = Instant::now();
                requests.fetch_add(1, Ordering::Relaxed);
                let Poll::Got(processes) = executor.assign(1, max).await else {
                    continue;
                };
                assign.record(t0.elapsed());
                let arrived = Instant::now();
                let got = ids(&processes);
                if batched {
                    let body: Vec<Value> = got.iter().map(|id| json!({"id": id})).collect();
                    let body = serde_json::to_vec(&body).unwrap();
                    formation.record(arrived.elapsed());
                    requests.fetch_add(1, Ordering::Relaxed);
                    let _ = executor
                        .http
                        .post(format!("{}/v1/processes/close", executor.base))
                        .bearer_auth(&executor.token)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                } else {
                    for id in &got {
                        requests.fetch_add(1, Ordering::Relaxed);
                        executor.close(*id).await;
                    }
                }
                // The run ends when the last process is closed, not when the executors'
                // final (empty) long-polls time out.
                if done.fetch_add(got.len(), Ordering::AcqRel) + got.len() >= n {
                    let _ = finished.set(Instant::now());
                }
            }
            (formation, assign)
        }));
    }
    // Submit once every executor is parked (each waits on the broadcast key of its type).
    let deadline = Instant::now() + Duration::from_secs(30);
    while replica
        .metric("colony_parked_waiters", &[("kind", "broadcast")])
        .await
        < EXECUTORS as f64
    {
        assert!(Instant::now() < deadline, "executors parked within 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let token = executors[0].1.clone();
    let url = format!("{}/v1/colonies/bench/processes", replica.base);
    let spec = json!({"funcname": "f", "maxexectime": 300, "conditions": {"executortype": "t"}});
    let mut submitters = Vec::new();
    for s in 0..SUBMITTERS {
        let (url, token, spec, requests) = (
            url.clone(),
            token.clone(),
            spec.clone(),
            http_requests.clone(),
        );
        let share = n / SUBMITTERS + usize::from(s < n % SUBMITTERS);
        submitters.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut left = share;
            while left > 0 {
                let count = if batched { left.min(500) } else { 1 };
                let body = if batched {
                    Value::Array(vec![spec.clone(); count])
                } else {
                    spec.clone()
                };
                requests.fetch_add(1, Ordering::Relaxed);
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .expect("submit");
                assert_eq!(r.status(), 201, "submit");
                left -= count;
            }
        }));
    }
    for s in submitters {
        s.await.unwrap();
    }
    let (mut formation, mut assign) = (Latencies::default(), Latencies::default());
    for t in tasks {
        let (f, a) = t.await.unwrap();
        formation.merge(&f);
        assign.merge(&a);
    }
    let seconds = finished
        .get()
        .expect("every process closed")
        .duration_since(started)
        .as_secs_f64();
    let sql = replica.metric("colony_db_queries_total", &[]).await - sql_before;
    let notifications = replica
        .metric("colony_notifications_received_total", &[])
        .await
        - notify_before;
    replica.stop().await;
    b.drop_db(&db).await;
    bar.finish_and_clear();
    Run {
        seconds,
        http: http_requests.load(Ordering::Relaxed),
        sql,
        notifications,
        formation,
        assign,
    }
}
