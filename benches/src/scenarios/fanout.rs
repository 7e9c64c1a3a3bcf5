//! Issue 12 item 6, the fan-out figures: what one wake costs as replicas and parked executors grow,
//! at 1, 3 and 9 replicas and 100 and 10,000 parked executors (one long-poll each, all held by this
//! process). Per wake: latency to the executor that gets the process, notifications delivered,
//! long-polls woken and the races they lose, SQL round trips, CPU of the replicas and of the
//! database's backends (its LISTEN connections apart); the NOTIFY queue and the listeners; and what
//! the parked executors cost at rest (memory, idle CPU).

use crate::cpu::process_cpu;
use crate::env::{Bench, Db, Replica, connect, spinner, total};
use crate::measure::{Latencies, ms};
use crate::report::{Section, Table};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Statement};

/// Time between two submits of the wake phase: far more than a wake takes, so each is measured
/// alone, and every wake still finds nearly all executors parked.
const PACE: Duration = Duration::from_millis(20);
/// Unmeasured wakes before each measurement.
const WARM_UP: usize = 20;
/// The long-polls' timeout (the replicas allow it): longer than a whole configuration takes, so
/// no wave of timed-out polls coming back falls into a measurement.
const POLL_TIMEOUT_S: u64 = 600;

pub async fn run(b: &Bench) -> Section {
    let smoke = b.size.name == "smoke";
    let (replica_counts, parked_counts, wakes, idle) = if smoke {
        (vec![1, 2], vec![20, 200], 10, Duration::from_millis(500))
    } else {
        (
            vec![1, 3, 9],
            vec![100, 10_000],
            200,
            Duration::from_secs(5),
        )
    };
    let mut section = Section::new(
        "fanout",
        "13. Fan-out: what a wake costs as replicas and parked executors grow",
        &format!(
            "Parked executors {parked_counts:?} (one long-poll each, `timeout={POLL_TIMEOUT_S}`, one type, no location: all wait on \
             the same broadcast key), spread round-robin over {replica_counts:?} replicas; all long-polls are held by \
             the load generator. After {WARM_UP} unmeasured wakes (the replicas' pools open), {wakes} processes are submitted one at a time, {} ms apart, each one NOTIFY \
             (count 1) on that key. Per wake: latency from the submit's commit to the executor holding the process \
             (as in scenario 3); notifications delivered, long-polls woken by them, long-polls woken by the \
             periodic catch-up (once a second it asks the database which parked keys have work waiting), and races \
             lost (woken, and another executor took the process), and SQL round trips, summed over the replicas; CPU from \
             /proc/<pid>/task/*/schedstat, of all replicas and of the database's backends (the replicas' LISTEN \
             connections, and all of this database's backends: submitter, pools, relay worker), net of the idle \
             rate measured over {:.1} s just before (from one catch-up pass of each replica after everything parked). NOTIFY queue = the peak of `pg_notification_queue_usage()` \
             sampled after each submit.",
            PACE.as_millis(),
            idle.as_secs_f64()
        ),
    );
    let mut wake_table = Table::new(
        "Per wake:",
        &[
            "replicas",
            "parked",
            "p50 ms",
            "p99 ms",
            "notifications delivered",
            "long-polls woken",
            "woken by the catch-up",
            "races lost",
            "SQL round trips",
            "CPU µs: replicas",
            "DB: LISTEN backends",
            "DB: pool backends",
            "DB: all backends",
            "LISTEN connections",
            "NOTIFY queue peak",
        ],
    );
    let mut rest_table = Table::new(
        "At rest, everything parked:",
        &[
            "replicas",
            "parked",
            "replica RSS per parked long-poll KiB",
            "idle CPU ms/s: replicas",
            "DB backends",
        ],
    );
    let mut raw = Vec::new();
    let open_files = open_files_limit();
    for &parked in &parked_counts {
        // Every parked long-poll is a socket here (and one in a replica, which raises its own
        // limit at start); main() has raised this process's soft limit to the hard one.
        if open_files < (parked + 1000) as u64 {
            section.notes.push(format!(
                "{parked} parked: skipped, this process may open only {open_files} files (`ulimit -Hn`); \
                 it needs {parked} sockets plus some."
            ));
            continue;
        }
        let db = b.fresh_db(&format!("fanout_{parked}")).await;
        let setup = db.client().await;
        let tokens: Vec<String> = setup
            .query(
                "SELECT colony_assign.add_executor('bench', 'f' || i, 't')
                 FROM generate_series(1, $1::integer) i",
                &[&parked],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        for &replicas in &replica_counts {
            let bar = spinner(format!(
                "fan-out: {replicas} replica(s), {parked} parked executors"
            ));
            let m = measure(b, &db, &tokens, replicas, wakes, idle, &bar).await;
            bar.finish_and_clear();
            let per_wake = |v: f64| format!("{:.2}", v / wakes as f64);
            let us = |seconds: f64| format!("{:.0}", seconds * 1e6 / wakes as f64);
            wake_table.row(vec![
                replicas.to_string(),
                parked.to_string(),
                ms(m.latencies.p(50.0)),
                ms(m.latencies.p(99.0)),
                per_wake(m.notifications),
                per_wake(m.woken),
                per_wake(m.catchup_woken),
                per_wake(m.lost_races),
                per_wake(m.queries),
                us(m.replica_cpu),
                us(m.listen_cpu),
                us(m.pool_cpu),
                us(m.db_cpu),
                m.listeners.to_string(),
                format!("{:.6}%", m.queue_peak * 100.0),
            ]);
            rest_table.row(vec![
                replicas.to_string(),
                parked.to_string(),
                format!("{:.1}", m.rss_per_parked_kib),
                format!("{:.1}", m.idle_replica_cpu * 1e3),
                format!("{:.1}", m.idle_db_cpu * 1e3),
            ]);
            raw.push(json!({
                "replicas": replicas, "parked": parked, "wakes": wakes,
                "wake": m.latencies.summary(), "missed": m.missed,
                "notifications": m.notifications, "woken": m.woken, "catchup_woken": m.catchup_woken, "lost_races": m.lost_races,
                "queries": m.queries, "replica_cpu_s": m.replica_cpu, "listen_cpu_s": m.listen_cpu, "pool_cpu_s": m.pool_cpu,
                "db_cpu_s": m.db_cpu, "listeners": m.listeners, "queue_peak": m.queue_peak,
                "rss_per_parked_kib": m.rss_per_parked_kib,
                "idle_replica_cpu_s_per_s": m.idle_replica_cpu, "idle_db_cpu_s_per_s": m.idle_db_cpu,
            }));
            if m.missed > 0 {
                section.notes.push(format!(
                    "{replicas} replica(s), {parked} parked: {} of {wakes} processes did not reach an executor \
                     within 30 s.",
                    m.missed
                ));
            }
        }
        drop(setup);
        b.drop_db(&db).await;
    }
    section.tables.push(wake_table);
    section.tables.push(rest_table);
    section.notes.push(
        "Each replica LISTENs once per key its waiters need, so a NOTIFY reaches every replica with a waiter on \
         its key, once, and each wakes at most `count` of its own waiters: with R replicas a process with count 1 \
         wakes R long-polls, one of which gets it. The parked executors that do not fit the key are not looked \
         at, and those that fit are not all woken: the cost of a wake grows with the replicas, not with the \
         parked executors. At rest it is the other way round: every executor also waits on its own name key, so \
         N parked executors are N + 1 keys to LISTEN on and to put in each replica's once-a-second catch-up query \
         (the idle CPU columns)."
            .into(),
    );
    section.raw = Value::Array(raw);
    section
}

/// This process's soft limit on open files.
fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        u64::MAX
    }
}

/// What one (replicas, parked) configuration measured; counts and CPU seconds are totals over
/// its wakes.
struct Measured {
    latencies: Latencies,
    missed: usize,
    notifications: f64,
    woken: f64,
    catchup_woken: f64,
    lost_races: f64,
    queries: f64,
    replica_cpu: f64,
    listen_cpu: f64,
    pool_cpu: f64,
    db_cpu: f64,
    listeners: i64,
    queue_peak: f64,
    rss_per_parked_kib: f64,
    /// CPU seconds per second with everything parked and nothing to do.
    idle_replica_cpu: f64,
    idle_db_cpu: f64,
}

async fn measure(
    b: &Bench,
    db: &Db,
    tokens: &[String],
    replicas: usize,
    wakes: usize,
    idle: Duration,
    bar: &indicatif::ProgressBar,
) -> Measured {
    let mut nodes = Vec::new();
    for r in 0..replicas {
        let max_timeout = POLL_TIMEOUT_S.to_string();
        nodes.push(
            Replica::start(
                b,
                db,
                &format!("fan-{replicas}-{r}"),
                &["--max-timeout-s", &max_timeout],
            )
            .await,
        );
    }
    let rss_before: u64 = nodes.iter().map(|n| n.rss_kib()).sum();
    // One HTTP client for every long-poll: one connection each, no per-executor client state.
    let http = reqwest::Client::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, Arrival)>();
    let mut pollers = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let base = nodes[i % replicas].base.clone();
        let (http, token, tx) = (http.clone(), token.clone(), tx.clone());
        pollers.push(tokio::spawn(async move {
            let assign = format!("{base}/v1/colonies/bench/assign?timeout={POLL_TIMEOUT_S}&max=1");
            loop {
                let answer = http.post(&assign).bearer_auth(&token).send().await;
                let processes: Vec<Value> = match answer {
                    Ok(r) if r.status() == 200 => r.json().await.unwrap_or_default(),
                    Ok(r) if r.status() == 204 => continue,
                    _ => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let at = Arrival::now();
                for p in processes {
                    let id = p["id"].as_i64().unwrap_or(0);
                    let _ = tx.send((id, at));
                    let _ = http
                        .post(format!("{base}/v1/processes/{id}/close"))
                        .bearer_auth(&token)
                        .body("{}")
                        .send()
                        .await;
                }
            }
        }));
    }
    bar.set_message(format!(
        "fan-out: {replicas} replica(s), parking {} long-polls",
        tokens.len()
    ));
    wait_parked(&nodes, tokens.len()).await;
    let rss_parked: u64 = nodes.iter().map(|n| n.rss_kib()).sum();
    let observer = connect(&db.conninfo).await;

    let submitter = connect(&db.conninfo).await;
    let submit = submitter
        .prepare("SELECT colony_assign.submit('bench', $1), pg_current_xact_id()::text")
        .await
        .unwrap();
    // Unmeasured wakes first: the replicas open their pool connections and the paths warm up
    // (a backend starting up costs milliseconds of CPU and delays the wake that waits for it).
    bar.set_message(format!(
        "fan-out: {replicas} replica(s), {} parked: warming up",
        tokens.len()
    ));
    let warm = paced(&submitter, &submit, &observer, WARM_UP).await;
    collect(&mut rx, &warm.submitted).await;
    // The warm-up's executors park again before the rest is measured, and every replica's
    // catch-up has looked at them once since (its first pass after a change rebuilds the list
    // of keys it asks about; at rest the list is reused).
    wait_parked(&nodes, tokens.len()).await;
    one_catch_up_each(&nodes).await;

    bar.set_message(format!(
        "fan-out: {replicas} replica(s), {} parked: at rest",
        tokens.len()
    ));
    let before = Cpu::now(&observer, &nodes).await;
    let idle_started = Instant::now();
    tokio::time::sleep(idle).await;
    let after_idle = Cpu::now(&observer, &nodes).await;
    let idle_seconds = idle_started.elapsed().as_secs_f64();

    bar.set_message(format!(
        "fan-out: {replicas} replica(s), {} parked: waking",
        tokens.len()
    ));
    let counters_before = Counters::of(&nodes).await;
    let cpu_before = Cpu::now(&observer, &nodes).await;
    let window = Instant::now();
    let Paced {
        submitted,
        queue_peak,
    } = paced(&submitter, &submit, &observer, wakes).await;
    let arrived = collect(&mut rx, &submitted).await;
    let wanted = submitted.len();
    let cpu_after = Cpu::now(&observer, &nodes).await;
    let window = window.elapsed().as_secs_f64();
    let counters_after = Counters::of(&nodes).await;
    let listeners: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name LIKE '% listen'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let latencies = since_commit(&observer, &submitted, &arrived).await;

    for p in &pollers {
        p.abort();
    }
    drop(http);
    for n in nodes {
        n.stop().await;
    }

    let idle = after_idle.since(&before);
    let busy = cpu_after.since(&cpu_before);
    let idle_rate = |k: usize| idle[k] / idle_seconds;
    let net = |k: usize| (busy[k] - idle_rate(k) * window).max(0.0);
    Measured {
        latencies,
        missed: wanted - arrived.len(),
        notifications: counters_after.notifications - counters_before.notifications,
        woken: counters_after.woken - counters_before.woken,
        catchup_woken: counters_after.catchup_woken - counters_before.catchup_woken,
        lost_races: counters_after.lost_races - counters_before.lost_races,
        queries: counters_after.queries - counters_before.queries,
        replica_cpu: net(0),
        listen_cpu: net(1),
        pool_cpu: net(2),
        db_cpu: net(3),
        listeners,
        queue_peak,
        rss_per_parked_kib: rss_parked.saturating_sub(rss_before) as f64 / tokens.len() as f64,
        idle_replica_cpu: idle_rate(0),
        idle_db_cpu: idle_rate(3),
    }
}

/// What [`paced`] submitted: (process id, transaction id) each, and the NOTIFY queue's peak.
struct Paced {
    submitted: Vec<(i64, String)>,
    queue_peak: f64,
}

/// Submits `n` processes, [`PACE`] apart, each in its own transaction.
async fn paced(submitter: &Client, submit: &Statement, observer: &Client, n: usize) -> Paced {
    let spec = json!({"funcname": "wake", "conditions": {"executortype": "t"}});
    let mut submitted = Vec::with_capacity(n);
    let mut queue_peak = 0.0f64;
    let mut tick = tokio::time::interval(PACE);
    for _ in 0..n {
        tick.tick().await;
        let row = submitter.query_one(submit, &[&spec]).await.unwrap();
        submitted.push((row.get(0), row.get(1)));
        let usage: f64 = observer
            .query_one("SELECT pg_notification_queue_usage()", &[])
            .await
            .unwrap()
            .get(0);
        queue_peak = queue_peak.max(usage);
    }
    Paced {
        submitted,
        queue_peak,
    }
}

/// Waits (up to 30 s) until every submitted process reached an executor; when each did.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<(i64, Arrival)>,
    submitted: &[(i64, String)],
) -> HashMap<i64, Arrival> {
    let wanted: HashSet<i64> = submitted.iter().map(|(id, _)| *id).collect();
    let mut arrived = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrived.len() < wanted.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((id, at))) if wanted.contains(&id) => {
                arrived.insert(id, at);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    arrived
}

/// Waits until `n` long-polls are parked over `nodes`, and the replicas have gone quiet (half
/// a second with no query but the periodic catch-up): a
/// long-poll counts as parked before its first assign (which finds nothing) has run, and
/// thousands of those must not fall into a measurement.
async fn wait_parked(nodes: &[Replica], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while total(nodes, "colony_parked_waiters", &[("kind", "name")]).await < n as f64 {
        assert!(
            Instant::now() < deadline,
            "long-polls did not all park within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut queries = total(nodes, "colony_db_queries_total", &[]).await;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = total(nodes, "colony_db_queries_total", &[]).await;
        // Quiet: at most each replica's periodic catch-up query (one a second).
        if now - queries <= nodes.len() as f64 {
            return;
        }
        queries = now;
    }
}

/// Returns once each replica has sent at least one more query (at rest: its catch-up, once a
/// second).
async fn one_catch_up_each(nodes: &[Replica]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut before = Vec::new();
    for node in nodes.chunks(1) {
        before.push(total(node, "colony_db_queries_total", &[]).await);
    }
    for (node, before) in nodes.chunks(1).zip(before) {
        while total(node, "colony_db_queries_total", &[]).await <= before {
            assert!(
                Instant::now() < deadline,
                "a replica ran no catch-up in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The replicas' counters, summed.
struct Counters {
    notifications: f64,
    woken: f64,
    /// Long-polls the periodic catch-up woke (it found the process still waiting).
    catchup_woken: f64,
    lost_races: f64,
    queries: f64,
}

impl Counters {
    async fn of(nodes: &[Replica]) -> Counters {
        Counters {
            notifications: total(nodes, "colony_notifications_received_total", &[]).await,
            woken: total(nodes, "colony_wakes_total", &[("cause", "notification")]).await,
            catchup_woken: total(nodes, "colony_wakes_total", &[("cause", "catchup")]).await,
            lost_races: total(
                nodes,
                "colony_wake_outcomes_total",
                &[("outcome", "lost_race")],
            )
            .await,
            queries: total(nodes, "colony_db_queries_total", &[]).await,
        }
    }
}

/// CPU seconds used so far by the replicas and by each of the database's backends (by pid,
/// with its kind), as a snapshot: a backend that starts between two snapshots counts in full.
struct Cpu {
    replicas: f64,
    backends: HashMap<u32, (Kind, f64)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A replica's LISTEN connection.
    Listen,
    /// A replica's pool.
    Pool,
    /// The relay worker, the submitter.
    Other,
}

impl Cpu {
    async fn now(observer: &Client, nodes: &[Replica]) -> Cpu {
        let rows = observer
            .query(
                "SELECT pid, coalesce(application_name, '') FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        let backends = rows
            .iter()
            .map(|r| {
                let (pid, name): (i32, String) = (r.get(0), r.get(1));
                let kind = if name.ends_with(" listen") {
                    Kind::Listen
                } else if name.starts_with("colony-coordinator") {
                    Kind::Pool
                } else {
                    Kind::Other
                };
                (pid as u32, (kind, process_cpu(pid as u32)))
            })
            .collect();
        Cpu {
            replicas: nodes.iter().filter_map(|n| n.pid()).map(process_cpu).sum(),
            backends,
        }
    }

    /// CPU seconds since `earlier` of: the replicas, LISTEN backends, pool backends, all backends.
    fn since(&self, earlier: &Cpu) -> [f64; 4] {
        let mut out = [self.replicas - earlier.replicas, 0.0, 0.0, 0.0];
        for (pid, (kind, cpu)) in &self.backends {
            let used = cpu - earlier.backends.get(pid).map_or(0.0, |(_, c)| *c);
            match kind {
                Kind::Listen => out[1] += used,
                Kind::Pool => out[2] += used,
                Kind::Other => {}
            }
            out[3] += used;
        }
        out
    }
}

/// When a process reached its executor, on the wall clock (to compare with commit timestamps).
#[derive(Clone, Copy)]
struct Arrival {
    wall: SystemTime,
}

impl Arrival {
    fn now() -> Arrival {
        Arrival {
            wall: SystemTime::now(),
        }
    }
}

/// Latencies from each submit's commit (`track_commit_timestamp`, on in the dev cluster; none
/// without it) to the process's arrival.
async fn since_commit(
    client: &Client,
    submitted: &[(i64, String)],
    arrived: &HashMap<i64, Arrival>,
) -> Latencies {
    let xids: Vec<&str> = submitted.iter().map(|(_, x)| x.as_str()).collect();
    let committed: Vec<Option<i64>> = client
        .query(
            "SELECT (extract(epoch FROM pg_xact_commit_timestamp(x::xid)) * 1000000)::bigint \
             FROM unnest($1::text[]) WITH ORDINALITY AS u(x, i) ORDER BY i",
            &[&xids],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_else(|_| vec![None; xids.len()]);
    let mut latencies = Latencies::default();
    for ((id, _), committed) in submitted.iter().zip(committed) {
        let (Some(at), Some(committed)) = (arrived.get(id), committed) else {
            continue;
        };
        let wall = at
            .wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        latencies.record(Duration::from_micros((wall - committed).max(0) as u64));
    }
    latencies
}
