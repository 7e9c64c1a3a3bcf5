//! Issue 3's scale and fault figures: one replica holding 10,000 parked long-polls (its RSS,
//! and the wake latency with them parked), and how long it takes to recover after its LISTEN
//! backend is terminated.

use crate::env::{Bench, HttpExecutor, Poll, Replica, connect, spinner};
use crate::measure::{Latencies, ms};
use crate::report::{Section, Table};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const EXECUTORS: usize = 100;

pub async fn run(b: &Bench) -> Section {
    let parked = b.size.parked;
    let mut section = Section::new(
        "parked",
        "9. One replica, many parked long-polls; recovery of the LISTEN connection",
        &format!(
            "{parked} concurrent long-polls (timeout 60 s) from {EXECUTORS} executors of one type, no location, on one \
             replica. RSS from /proc. Then 200 location-less processes are submitted one at a time; each wakes one of \
             the parked long-polls (latency as in scenario 3). Finally the replica's LISTEN backend is terminated with \
             `pg_terminate_backend` and a process is submitted at once: recovery = until `/healthz` is 200 again, and \
             until that process reached a parked executor."
        ),
    );
    let bar = spinner(format!("parked: {parked} long-polls"));
    let db = b.fresh_db("parked").await;
    let executors = db.executors(EXECUTORS, "p", "t", None).await;
    let replica = Replica::start(b, &db, "parked-0", &[]).await;
    let rss_idle = replica.rss_kib();
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let mut polls = Vec::new();
    for i in 0..parked {
        let (name, token) = &executors[i % EXECUTORS];
        let executor = HttpExecutor::new(&replica, name, token);
        let tx = tx.clone();
        polls.push(tokio::spawn(async move {
            if let Poll::Got(p) = executor.assign(60, 1).await {
                let id = p[0]["id"].as_i64().unwrap();
                let _ = tx.send((id, Instant::now()));
                executor.close(id).await;
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while replica
        .metric("colony_parked_waiters", &[("kind", "name")])
        .await
        < parked as f64
    {
        assert!(Instant::now() < deadline, "long-polls did not all park");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_parked = replica.rss_kib();
    bar.set_message("parked: wake latency with them parked");
    let submitter = connect(&db.conninfo).await;
    let submit = submitter
        .prepare("SELECT colony_assign.submit('bench', $1)")
        .await
        .unwrap();
    let spec = json!({"funcname": "wake", "conditions": {"executortype": "t"}});
    let mut latencies = Latencies::default();
    let samples = 200.min(parked / 2);
    for _ in 0..samples {
        let t0 = Instant::now();
        let id: i64 = submitter.query_one(&submit, &[&spec]).await.unwrap().get(0);
        loop {
            let (got, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("woken")
                .unwrap();
            if got == id {
                latencies.record(at.duration_since(t0));
                break;
            }
        }
    }

    bar.set_message("parked: terminating the LISTEN backend");
    let killed_at = Instant::now();
    submitter
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'colony-coordinator parked-0 listen'",
            &[],
        )
        .await
        .unwrap();
    let id: i64 = submitter.query_one(&submit, &[&spec]).await.unwrap().get(0);
    let http = reqwest::Client::new();
    let mut healthy_after = None;
    let mut delivered_after = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while (healthy_after.is_none() || delivered_after.is_none()) && Instant::now() < deadline {
        if healthy_after.is_none()
            && replica
                .metric("colony_listener_reconnects_total", &[])
                .await
                >= 1.0
            && matches!(http.get(format!("{}/healthz", replica.base)).send().await, Ok(r) if r.status() == 200)
        {
            healthy_after = Some(killed_at.elapsed());
        }
        while let Ok((got, at)) = rx.try_recv() {
            if got == id {
                delivered_after = Some(at.duration_since(killed_at));
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bar.finish_and_clear();
    for p in polls {
        p.abort();
    }
    replica.stop().await;

    let mut table = Table::new("", &["measure", "value"]);
    table.row(vec![
        "coordinator RSS, idle".into(),
        format!("{:.1} MiB", rss_idle as f64 / 1024.0),
    ]);
    table.row(vec![
        format!("coordinator RSS, {parked} long-polls parked"),
        format!("{:.1} MiB", rss_parked as f64 / 1024.0),
    ]);
    table.row(vec![
        "per parked long-poll".into(),
        format!(
            "{:.1} KiB",
            (rss_parked.saturating_sub(rss_idle)) as f64 / parked as f64
        ),
    ]);
    table.row(vec![
        format!("wake latency with them parked, p50 ({samples} samples)"),
        format!("{} ms", ms(latencies.p(50.0))),
    ]);
    table.row(vec![
        "wake latency with them parked, p99".into(),
        format!("{} ms", ms(latencies.p(99.0))),
    ]);
    let show = |d: Option<Duration>| {
        d.map_or("not within 60 s".into(), |d| {
            format!("{} ms", ms(d.as_secs_f64() * 1000.0))
        })
    };
    table.row(vec![
        "LISTEN backend killed → /healthz 200 again".into(),
        show(healthy_after),
    ]);
    table.row(vec![
        "LISTEN backend killed → process submitted meanwhile received".into(),
        show(delivered_after),
    ]);
    section.tables.push(table);
    section.raw = json!({"parked": parked, "rss_idle_kib": rss_idle, "rss_parked_kib": rss_parked,
        "wake": latencies.summary(), "recovery_healthy_ms": healthy_after.map(|d| d.as_secs_f64() * 1000.0),
        "recovery_delivered_ms": delivered_after.map(|d| d.as_secs_f64() * 1000.0)});
    b.drop_db(&db).await;
    section
}
