//! Scenario 1, the seed's table: 10,000 pre-submitted processes, 50 executors over HTTP
//! assigning (timeout 1 s) and closing each, 1/3/5/7/9 replicas, distributed and strict.

use crate::env::{Bench, HttpExecutor, Poll, Replica, spec, spinner};
use crate::measure::{Latencies, ms, rate, ratio};
use crate::report::{Section, Table, target};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const EXECUTORS: usize = 50;

pub async fn run(b: &Bench) -> Section {
    let n = b.size.seed_processes;
    let mut section = Section::new(
        "seed",
        "1. The seed's table: exclusive vs distributed assign, reproduced",
        &format!(
            "{n} processes pre-submitted; {EXECUTORS} executors over HTTP, spread round-robin over the replicas, each \
             looping `POST /assign?timeout=1` then `POST /close`. Latency = the assign request as the executor sees it. \
             ColonyOS measured 25-35 ms avg / 45-65 ms p99 (distributed) and ~345 ms avg (exclusive) on Kubernetes; \
             here everything (PostgreSQL, every replica, the executors) shares one 2-core machine."
        ),
    );
    let mut table = Table::new(
        "",
        &[
            "mode",
            "replicas",
            "successful",
            "failed",
            "avg ms",
            "p95 ms",
            "p99 ms",
            "assigns/s",
        ],
    );
    let mut raw = Vec::new();
    let mut throughput = std::collections::HashMap::new();
    let (mut all_failed, mut worst_avg, mut worst_p99) = (0usize, 0.0f64, 0.0f64);
    for strict in [false, true] {
        let mode = if strict { "strict" } else { "distributed" };
        for &replicas in &b.size.seed_replicas {
            let bar = spinner(format!("seed: {mode}, {replicas} replica(s)"));
            let db = b.fresh_db(&format!("seed_{mode}_{replicas}")).await;
            if strict {
                db.client()
                    .await
                    .execute("SELECT colony_assign.set_strict('bench', true)", &[])
                    .await
                    .unwrap();
            }
            let executors = db.executors(EXECUTORS, "e", "t", None).await;
            db.submit_copies(&spec("t", None), n).await;
            db.vacuum().await;
            let mut nodes = Vec::new();
            for r in 0..replicas {
                nodes.push(Replica::start(b, &db, &format!("seed-{r}"), &[]).await);
            }
            let done = Arc::new(AtomicUsize::new(0));
            let failed = Arc::new(AtomicUsize::new(0));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for (i, (name, token)) in executors.iter().enumerate() {
                let executor = HttpExecutor::new(&nodes[i % replicas], name, token);
                let (done, failed) = (done.clone(), failed.clone());
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Latencies::default();
                    let mut finished_at = None;
                    while done.load(Ordering::Acquire) < n {
                        let t0 = Instant::now();
                        match executor.assign(1, 1).await {
                            Poll::Got(processes) => {
                                latencies.record(t0.elapsed());
                                for p in processes {
                                    if !executor.close(p["id"].as_i64().unwrap()).await {
                                        failed.fetch_add(1, Ordering::Relaxed);
                                    }
                                    if done.fetch_add(1, Ordering::AcqRel) + 1 == n {
                                        finished_at = Some(Instant::now());
                                    }
                                }
                            }
                            Poll::Empty => {}
                            Poll::Failed => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    (latencies, finished_at)
                }));
            }
            let mut latencies = Latencies::default();
            let mut finished = started;
            for task in tasks {
                let (l, at) = task.await.unwrap();
                latencies.merge(&l);
                if let Some(at) = at {
                    finished = at;
                }
            }
            bar.finish_and_clear();
            let seconds = finished.duration_since(started).as_secs_f64();
            let per_second = latencies.count() as f64 / seconds;
            let failures = failed.load(Ordering::Acquire);
            all_failed += failures;
            if !strict {
                worst_avg = worst_avg.max(latencies.mean());
                worst_p99 = worst_p99.max(latencies.p(99.0));
            }
            throughput.insert((strict, replicas), per_second);
            table.row(vec![
                mode.into(),
                replicas.to_string(),
                latencies.count().to_string(),
                failures.to_string(),
                ms(latencies.mean()),
                ms(latencies.p(95.0)),
                ms(latencies.p(99.0)),
                rate(per_second),
            ]);
            raw.push(
                json!({"mode": mode, "replicas": replicas, "failed": failures, "seconds": seconds,
                            "assigns_per_second": per_second, "latency": latencies.summary()}),
            );
            for node in nodes {
                node.stop().await;
            }
            b.drop_db(&db).await;
        }
    }
    let worst_strict_ratio = b
        .size
        .seed_replicas
        .iter()
        .map(|r| throughput[&(true, *r)] / throughput[&(false, *r)])
        .fold(f64::MAX, f64::min);
    section.targets.push(target(
        "failed assigns",
        "0",
        all_failed.to_string(),
        all_failed == 0,
    ));
    section.targets.push(target(
        "distributed avg, worst replica count",
        "<= 5 ms",
        format!("{} ms", ms(worst_avg)),
        worst_avg <= 5.0,
    ));
    section.targets.push(target(
        "distributed p99, worst replica count",
        "<= 20 ms",
        format!("{} ms", ms(worst_p99)),
        worst_p99 <= 20.0,
    ));
    section.targets.push(target(
        "strict throughput / distributed, worst replica count",
        ">= 0.50",
        ratio(worst_strict_ratio),
        worst_strict_ratio >= 0.5,
    ));
    section.tables.push(table);
    section.raw = json!(raw);
    section
}
