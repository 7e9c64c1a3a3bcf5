//! Partitions, measured: a link blackholed with `faultproxy` (traffic dropped, not refused: no
//! RST, no FIN, connects time out), between a replica and PostgreSQL and between executors and a
//! replica, under a steady trickle of work. Per cut: how soon it is detected, how work submitted
//! meanwhile fares, how long the executors on the cut side sit idle, how soon service is back
//! after the heal; over all cuts: processes lost, received twice, and claimed into the dead link.

use crate::env::{Bench, Db, Replica, connect};
use crate::measure::ms;
use crate::report::{Section, Table, target};
use colony_client::{Client, Url};
use faultproxy::Proxy;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Executors per link kind: half start on the replica that will be cut off.
const EXECUTORS: usize = 4;
/// One process submitted every this often, all along.
const TRICKLE: Duration = Duration::from_millis(20);
/// Long-poll timeout of the executors.
const LONG_POLL: Duration = Duration::from_secs(10);

/// (process id, executor index, when it was received).
type Claims = Arc<Mutex<Vec<(i64, usize, Instant)>>>;

/// What one cut measured.
#[derive(Default, Clone)]
struct Cut {
    detected: Duration,
    /// Longest submit → received of processes submitted during the cut.
    served: Duration,
    /// Per executor on the cut side: until it received work again (None: not before the
    /// next cut's measurement ended).
    idle: Vec<Option<Duration>>,
    recovered: Duration,
}

/// Totals over the cuts of one link kind.
struct Totals {
    processes: usize,
    lost: usize,
    twice: usize,
    retried: usize,
}

fn secs(d: Duration) -> String {
    format!("{} ms", ms(d.as_secs_f64() * 1000.0))
}

/// How long `condition` took to hold ([`testkit::within`], timed), or None past `limit`.
async fn poll_until<F, Fut>(limit: Duration, condition: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    testkit::within(limit, condition)
        .await
        .then(|| started.elapsed())
}

/// An executor's client, swapped between cuts (its loop picks up the new one at its next
/// long-poll) so that each cut starts with half of them on the replica to be cut off.
type Current = Arc<Mutex<Client>>;

fn client(replicas: &[Url], token: &str, start_at: usize) -> Client {
    Client::builder(replicas.to_vec(), token)
        .start_at(start_at)
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// HTTP executors over `replicas`, closing whatever they get; (token, client, task) each.
async fn executors(
    db: &Db,
    replicas: &[Url],
    claims: &Claims,
) -> Vec<(String, Current, tokio::task::JoinHandle<()>)> {
    let mut out = Vec::new();
    for (i, (_, token)) in db
        .executors(EXECUTORS, "x", "t", None)
        .await
        .into_iter()
        .enumerate()
    {
        let current: Current = Arc::new(Mutex::new(client(replicas, &token, i % 2)));
        let (current2, claims) = (current.clone(), claims.clone());
        let task = tokio::spawn(async move {
            loop {
                let c = current2.lock().unwrap().clone();
                let Ok(processes) = c.assign("bench", LONG_POLL, 1).await else {
                    continue;
                };
                for p in processes {
                    claims.lock().unwrap().push((p.id, i, Instant::now()));
                    let _ = c.close(p.id, Some(json!("ok"))).await;
                }
            }
        });
        out.push((token, current, task));
    }
    out
}

/// Gives every executor a new client starting at replica `i % 2` and waits (up to 20 s) until
/// `r0` has the even ones parked; the executors on the side to be cut.
async fn regroup(
    execs: &[(String, Current, tokio::task::JoinHandle<()>)],
    replicas: &[Url],
    r0: &Replica,
) -> Vec<usize> {
    for (i, (token, current, _)) in execs.iter().enumerate() {
        *current.lock().unwrap() = client(replicas, token, i % 2);
    }
    let side: Vec<usize> = (0..execs.len()).filter(|i| i % 2 == 0).collect();
    poll_until(Duration::from_secs(20), || async {
        r0.metric("colony_parked_waiters", &[("kind", "broadcast")])
            .await
            >= side.len() as f64
    })
    .await
    .expect("half of the executors parked on r0 within 20 s");
    side
}

/// Submits one `spec` every TRICKLE until `stop`; (id, when submitted) of each.
fn trickle(
    db: &Db,
    spec: Value,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(i64, Instant)>> {
    let conninfo = db.conninfo.clone();
    tokio::spawn(async move {
        let client = connect(&conninfo).await;
        let submit = client
            .prepare("SELECT colony_assign.submit('bench', $1)")
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let at = Instant::now();
            let id: i64 = client.query_one(&submit, &[&spec]).await.unwrap().get(0);
            out.push((id, at));
            next += TRICKLE;
            tokio::time::sleep_until(next.into()).await;
        }
        out
    })
}

/// Waits for every submitted process to finish, then counts lost, received twice, retried.
async fn totals(db: &Db, submitted: &[(i64, Instant)], claims: &Claims) -> Totals {
    let sql = db.client().await;
    let ids: Vec<i64> = submitted.iter().map(|(id, _)| *id).collect();
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut unfinished = i64::MAX;
    while unfinished > 0 && Instant::now() < give_up {
        unfinished = sql
            .query_one(
                "SELECT count(*) FROM colony_assign.processes WHERE id = ANY($1) AND state <> 2",
                &[&ids],
            )
            .await
            .unwrap()
            .get(0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retried: i64 = sql
        .query_one(
            "SELECT count(*) FROM colony_assign.processes WHERE id = ANY($1) AND retries > 0",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0);
    let mut received: HashMap<i64, usize> = HashMap::new();
    for (id, _, _) in claims.lock().unwrap().iter() {
        *received.entry(*id).or_default() += 1;
    }
    Totals {
        processes: ids.len(),
        lost: unfinished.max(0) as usize,
        twice: received.values().filter(|n| **n > 1).count(),
        retried: retried as usize,
    }
}

/// Longest submit → received of the processes submitted in [from, to).
fn served(submitted: &[(i64, Instant)], claims: &Claims, from: Instant, to: Instant) -> Duration {
    let received: HashMap<i64, Instant> = claims
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _, at)| (*id, *at))
        .collect();
    submitted
        .iter()
        .filter(|(_, at)| *at >= from && *at < to)
        .map(|(id, at)| {
            received.get(id).map_or(Duration::from_secs(3600), |r| {
                r.saturating_duration_since(*at)
            })
        })
        .max()
        .unwrap_or_default()
}

/// Per executor in `side`: from `cut` until it next received work (None if not by `until`).
fn idle(claims: &Claims, side: &[usize], cut: Instant, until: Instant) -> Vec<Option<Duration>> {
    let claims = claims.lock().unwrap();
    side.iter()
        .map(|e| {
            claims
                .iter()
                .filter(|(_, x, at)| x == e && *at > cut && *at <= until)
                .map(|(_, _, at)| at.duration_since(cut))
                .min()
        })
        .collect()
}

fn pg_port(conninfo: &str) -> (String, u16, String) {
    let config: tokio_postgres::Config = conninfo.parse().expect("the bench conninfo");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    (
        host,
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_user().unwrap_or("postgres").to_owned(),
    )
}

/// Cuts between replica r0 and PostgreSQL (r1 reaches it directly).
async fn replica_postgres(b: &Bench, cuts: usize, cut_for: Duration) -> (Vec<Cut>, Totals) {
    let db = b.fresh_db("partition_pg").await;
    let (host, port, user) = pg_port(&db.conninfo);
    let proxy = Proxy::start(format!("{host}:{port}")).await.unwrap();
    let proxied = Db {
        name: db.name.clone(),
        conninfo: format!(
            "host=127.0.0.1 port={} user={user} dbname={}",
            proxy.port(),
            db.name
        ),
    };
    let r0 = Replica::start(b, &proxied, "partition-pg-r0", &[]).await;
    let r1 = Replica::start(b, &db, "partition-pg-r1", &[]).await;
    let urls = vec![Url::parse(&r0.base).unwrap(), Url::parse(&r1.base).unwrap()];
    let claims: Claims = Arc::default();
    let execs = executors(&db, &urls, &claims).await;
    let stop = Arc::new(AtomicBool::new(false));
    let submitting = trickle(&db, crate::env::spec("t", None), stop.clone());
    let mut out = Vec::new();
    let mut windows = Vec::new();
    for _ in 0..cuts {
        let side = regroup(&execs, &urls, &r0).await;
        let cut_at = Instant::now();
        proxy.blackhole().await;
        let detected = poll_until(Duration::from_secs(30), || async {
            r0.metric("colony_listener_connected", &[]).await == 0.0
        })
        .await
        .unwrap_or(Duration::from_secs(30));
        tokio::time::sleep(cut_for.saturating_sub(cut_at.elapsed())).await;
        let healed_at = Instant::now();
        proxy.heal().await;
        let recovered = poll_until(Duration::from_secs(30), || async {
            r0.metric("colony_listener_connected", &[]).await == 1.0
                && matches!(reqwest::get(format!("{}/healthz", r0.base)).await, Ok(r) if r.status() == 200)
        })
        .await
        .unwrap_or(Duration::from_secs(30));
        windows.push((cut_at, healed_at, side));
        out.push(Cut {
            detected,
            recovered,
            ..Cut::default()
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let submitted = submitting.await.unwrap();
    let totals = totals(&db, &submitted, &claims).await;
    let end = Instant::now();
    for (cut, (from, to, side)) in out.iter_mut().zip(windows) {
        cut.served = served(&submitted, &claims, from, to);
        cut.idle = idle(&claims, &side, from, end);
    }
    for (_, _, task) in execs {
        task.abort();
    }
    r0.stop().await;
    r1.stop().await;
    b.drop_db(&db).await;
    (out, totals)
}

/// Cuts between the executors and replica r0 (executors reach r0 only through the proxy).
async fn executors_replica(b: &Bench, cuts: usize, cut_for: Duration) -> (Vec<Cut>, Totals) {
    let db = b.fresh_db("partition_exec").await;
    let r0 = Replica::start(b, &db, "partition-exec-r0", &[]).await;
    let r1 = Replica::start(b, &db, "partition-exec-r1", &[]).await;
    let proxy = Proxy::start(r0.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let via_proxy = Url::parse(&format!("http://{}", proxy.addr())).unwrap();
    let urls = vec![via_proxy.clone(), Url::parse(&r1.base).unwrap()];
    let claims: Claims = Arc::default();
    let execs = executors(&db, &urls, &claims).await;
    let probe = Client::builder(vec![via_proxy.clone()], "probe")
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // A claim r0 answers into the dead link comes back only at its execution deadline.
    let mut spec = crate::env::spec("t", None);
    spec["maxexectime"] = json!(5);
    spec["maxretries"] = json!(3);
    let submitting = trickle(&db, spec, stop.clone());
    let mut out = Vec::new();
    let mut windows = Vec::new();
    for _ in 0..cuts {
        let side = regroup(&execs, &urls, &r0).await;
        let cut_at = Instant::now();
        proxy.blackhole().await;
        let detected = poll_until(Duration::from_secs(30), || async {
            side.iter().all(|i| {
                let current = execs[*i].1.lock().unwrap().clone();
                current.current_replica() != via_proxy
            })
        })
        .await
        .unwrap_or(Duration::from_secs(30));
        tokio::time::sleep(cut_for.saturating_sub(cut_at.elapsed())).await;
        let healed_at = Instant::now();
        proxy.heal().await;
        let recovered = poll_until(Duration::from_secs(30), || async {
            probe.health().await[0].1 == colony_client::Health::Healthy
        })
        .await
        .unwrap_or(Duration::from_secs(30));
        windows.push((cut_at, healed_at, side));
        out.push(Cut {
            detected,
            recovered,
            ..Cut::default()
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let submitted = submitting.await.unwrap();
    let totals = totals(&db, &submitted, &claims).await;
    let end = Instant::now();
    for (cut, (from, to, side)) in out.iter_mut().zip(windows) {
        cut.served = served(&submitted, &claims, from, to);
        cut.idle = idle(&claims, &side, from, end);
    }
    for (_, _, task) in execs {
        task.abort();
    }
    r0.stop().await;
    r1.stop().await;
    b.drop_db(&db).await;
    (out, totals)
}

fn max(values: impl Iterator<Item = Duration>) -> Duration {
    values.max().unwrap_or_default()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

pub async fn run(b: &Bench) -> Section {
    let smoke = b.size.name == "smoke";
    let (cuts, cut_for) = if smoke {
        (1, Duration::from_secs(3))
    } else {
        (5, Duration::from_secs(8))
    };
    let mut section = Section::new(
        "partition",
        "11. Partitions: a blackholed link, detected and healed",
        &format!(
            "A link blackholed with `faultproxy` (bytes neither delivered nor refused: no RST, no FIN, new connections \
             time out) for {} s, {cuts} times per link, while one process is submitted every {} ms over SQL and {EXECUTORS} \
             HTTP executors (colony-client with both replicas' URLs, long-poll {} s, half starting on each replica) close \
             what they get. *replica-PostgreSQL*: replica r0 reaches PostgreSQL through the proxy; detected = until r0's \
             LISTEN connection is declared dead (`colony_listener_connected` 0); recovered = from the heal until it is \
             connected and `/healthz` is 200. *executors-replica*: the executors reach r0 through the proxy (its processes \
             have maxexectime 5 s); detected = until every executor that was on r0 has moved to r1; recovered = from the \
             heal until r0 answers `/healthz` through the link. Served = the longest submit-to-received of the processes \
             submitted during a cut. Idle = how long the executors on the cut side received nothing, from the cut.",
            cut_for.as_secs(),
            TRICKLE.as_millis(),
            LONG_POLL.as_secs()
        ),
    );
    let mut table = Table::new(
        "",
        &[
            "link",
            "cuts",
            "detected p50 / max",
            "served during the cut, max",
            "executors on the cut side idle, p50 / max",
            "recovered after the heal, p50 / max",
            "processes",
            "lost",
            "received twice",
            "claimed into the dead link (retried at the deadline)",
        ],
    );
    let mut raw = serde_json::Map::new();
    for (link, (results, totals)) in [
        (
            "replica-PostgreSQL",
            replica_postgres(b, cuts, cut_for).await,
        ),
        (
            "executors-replica",
            executors_replica(b, cuts, cut_for).await,
        ),
    ] {
        let idle: Vec<Duration> = results
            .iter()
            .flat_map(|c| {
                c.idle
                    .iter()
                    .map(|i| i.unwrap_or(Duration::from_secs(3600)))
            })
            .collect();
        let detected = max(results.iter().map(|c| c.detected));
        let recovered = max(results.iter().map(|c| c.recovered));
        table.row(vec![
            link.into(),
            results.len().to_string(),
            format!(
                "{} / {}",
                secs(median(results.iter().map(|c| c.detected).collect())),
                secs(detected)
            ),
            secs(max(results.iter().map(|c| c.served))),
            format!(
                "{} / {}",
                secs(median(idle.clone())),
                secs(max(idle.iter().copied()))
            ),
            format!(
                "{} / {}",
                secs(median(results.iter().map(|c| c.recovered).collect())),
                secs(recovered)
            ),
            totals.processes.to_string(),
            totals.lost.to_string(),
            totals.twice.to_string(),
            totals.retried.to_string(),
        ]);
        section.targets.push(target(
            &format!("{link}: detected, worst cut"),
            "< 2 s",
            secs(detected),
            detected < Duration::from_secs(2),
        ));
        section.targets.push(target(
            &format!("{link}: recovered after the heal, worst cut"),
            "< 10 s",
            secs(recovered),
            recovered < Duration::from_secs(10),
        ));
        section.targets.push(target(
            &format!("{link}: processes lost / received twice"),
            "0 / 0",
            format!("{} / {}", totals.lost, totals.twice),
            totals.lost == 0 && totals.twice == 0,
        ));
        raw.insert(
            link.into(),
            json!({
                "detected_ms": results.iter().map(|c| c.detected.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
                "recovered_ms": results.iter().map(|c| c.recovered.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
                "served_ms": results.iter().map(|c| c.served.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
                "idle_ms": idle.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
                "processes": totals.processes, "lost": totals.lost, "received_twice": totals.twice,
                "retried": totals.retried,
            }),
        );
    }
    section.tables.push(table);
    section.notes.push(
        "What the figures show (docs/RELIABILITY.md, \"Partitions\"): a replica notices a dead link to PostgreSQL \
         within 2 x `--listen-ping-ms` (1.5 s) and work keeps flowing through the other replica at once; but the \
         executors parked on the cut replica are not told — they sit idle until their long-poll times out and their \
         next one fails over (the idle column). Across a cut executors-replica, the long-poll the client abandoned \
         stays parked on r0 (its FIN is lost in the cut), so r0 keeps claiming work for it and answers into the dead \
         link: each such process comes back only at its execution deadline (the last column), and one without a \
         deadline would stay RUNNING for good."
            .into(),
    );
    section.raw = Value::Object(raw);
    section
}
