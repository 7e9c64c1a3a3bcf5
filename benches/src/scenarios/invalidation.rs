//! Issue 12 item 5, cache coordination, measured: how soon after `remove_executor()` commits every
//! replica refuses the removed executor's token. Replicas cache who a token belongs to; the
//! `ca_control` channel voids that on every replica (coordinator/src/notifier/control.rs). The
//! replicas here run with an hour-long token cache TTL, so only that channel can void it within the
//! measurement.
//!
//! Two observations per replica and removal: a probe that asks the replica with the token every
//! millisecond (a request the cached token answers without touching the database, see
//! [`probe`]) until it is refused; and a long-poll of the executor parked on the replica, which
//! the same control event answers with 401. Measured idle, and again under a steady load of
//! wakes and assign+close cycles through the same replicas.

use crate::env::{Bench, Db, HttpExecutor, Poll, Replica, connect, spinner};
use crate::measure::{Latencies, ms};
use crate::report::{Section, Table, target};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

const REPLICAS: usize = 3;
/// Time between two probes of one replica: the resolution of the "refused" figures.
const PROBE_EVERY: Duration = Duration::from_millis(1);
/// A replica that has not refused the token by then counts as a miss.
const GIVE_UP: Duration = Duration::from_secs(10);
/// The load phase: one process submitted every this often, taken by HTTP executors.
const LOAD_EVERY: Duration = Duration::from_millis(2);
const LOAD_EXECUTORS_PER_REPLICA: usize = 2;
/// The goal of issue 12, item 5.
const GOAL_MS: f64 = 100.0;

pub async fn run(b: &Bench) -> Section {
    let trials = if b.size.name == "smoke" { 10 } else { 200 };
    let mut section = Section::new(
        "invalidation",
        "12. Cache coordination: a removed executor's token, refused by every replica",
        &format!(
            "{REPLICAS} replicas, started with `--token-cache-s 3600` (so only the `ca_control` channel can void a \
             cached token here). Per removal: a new executor registers, every replica authenticates its token once \
             (and caches it), the executor parks a long-poll on every replica, then `remove_executor()` commits. \
             Measured from that commit (`pg_xact_commit_timestamp`) to: each replica refusing the token to a fresh \
             request (a probe every {} ms per replica, `GET /v1/colonies/<another colony>/stats`, which a cached \
             token answers with 404 without a query and a voided one with 401), the last of the {REPLICAS} replicas \
             doing so, and each replica answering the parked long-poll with 401 (the same control event, handled \
             right after the cache forgot the token). {trials} removals idle, then {trials} under load: one process \
             submitted every {} ms (a NOTIFY each, to every replica) and taken by {} HTTP executors looping \
             assign + close through the same replicas.",
            PROBE_EVERY.as_millis(),
            LOAD_EVERY.as_millis(),
            LOAD_EXECUTORS_PER_REPLICA * REPLICAS
        ),
    );
    let bar = spinner("invalidation: starting replicas".into());
    let db = b.fresh_db("invalidation").await;
    let mut replicas = Vec::new();
    for r in 0..REPLICAS {
        replicas.push(
            Replica::start(b, &db, &format!("inval-{r}"), &["--token-cache-s", "3600"]).await,
        );
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let client = db.client().await;
    let tracked: String = client
        .query_one("SHOW track_commit_timestamp", &[])
        .await
        .unwrap()
        .get(0);
    let http = reqwest::Client::new();

    bar.set_message("invalidation: idle");
    let idle = phase(&client, &http, &bases, "idle", trials).await;
    bar.set_message("invalidation: under load");
    let load = Load::start(&db, &replicas).await;
    let loaded = phase(&client, &http, &bases, "busy", trials).await;
    let load_rate = load.stop();
    bar.finish_and_clear();
    for r in replicas {
        r.stop().await;
    }

    let mut table = Table::new(
        "",
        &[
            "phase",
            "removals",
            "from the commit to",
            "p50 ms",
            "p99 ms",
            "max ms",
            "not within 10 s",
        ],
    );
    let mut raw = serde_json::Map::new();
    for (label, trials_of) in [
        ("idle".to_owned(), &idle),
        (format!("under load ({load_rate:.0} processes/s)"), &loaded),
    ] {
        let figures = Figures::of(&client, tracked == "on", trials_of).await;
        for (what, latencies, missed) in [
            (
                "each replica refusing the token",
                &figures.each,
                figures.missed_probes,
            ),
            (
                "the last replica refusing it",
                &figures.last,
                figures.missed_trials,
            ),
            (
                "each replica's parked long-poll answering 401",
                &figures.long_poll,
                figures.missed_long_polls,
            ),
        ] {
            table.row(vec![
                label.clone(),
                trials_of.len().to_string(),
                what.into(),
                ms(latencies.p(50.0)),
                ms(latencies.p(99.0)),
                ms(latencies.max()),
                missed.to_string(),
            ]);
        }
        section.targets.push(target(
            &format!("{label}: every replica refuses a removed executor's token, p99"),
            &format!("< {GOAL_MS:.0} ms"),
            format!("{} ms", ms(figures.last.p(99.0))),
            figures.last.p(99.0) < GOAL_MS && figures.missed_trials == 0,
        ));
        if figures.overtaken > 0 {
            section.notes.push(format!(
                "{label}: {} parked long-polls were answered 404 instead, by the database: the removal overtook \
                 their first assign (a long-poll assigns once right after it parks), which found no such \
                 executor. They are left out of the long-poll row.",
                figures.overtaken
            ));
        }
        raw.insert(
            label,
            json!({"each": figures.each.summary(), "last": figures.last.summary(),
                   "long_poll": figures.long_poll.summary(), "missed_probes": figures.missed_probes,
                   "missed_trials": figures.missed_trials,
                   "missed_long_polls": figures.missed_long_polls,
                   "long_polls_overtaken": figures.overtaken}),
        );
    }
    section.tables.push(table);
    section.notes.push(format!(
        "A probe's figure is when its first 401 arrived, so it includes one authentication query and up to {} ms \
         of probe interval. {}",
        PROBE_EVERY.as_millis(),
        if tracked == "on" {
            "Times run from the removal's commit timestamp (taken just before its commit record is flushed)."
        } else {
            "track_commit_timestamp is off on this cluster: times run from sending the removal, so they include \
             running it."
        }
    ));
    raw.insert("load_processes_per_s".into(), json!(load_rate));
    section.raw = Value::Object(raw);
    b.drop_db(&db).await;
    section
}

/// What one removal left to measure.
struct Trial {
    sent: Instant,
    xid: String,
    /// Per replica: when a probe was first refused (None: not within [`GIVE_UP`]).
    refused: Vec<Option<Arrival>>,
    /// Per replica: how and when the parked long-poll answered (None: not within [`GIVE_UP`]).
    long_poll: Vec<Option<(u16, Arrival)>>,
}

/// `trials` removals, one after the other.
async fn phase(
    client: &Client,
    http: &reqwest::Client,
    bases: &[String],
    tag: &str,
    trials: usize,
) -> Vec<Trial> {
    let add = client
        .prepare("SELECT colony_assign.add_executor('bench', $1, 'x')")
        .await
        .unwrap();
    let remove = client
        .prepare("SELECT colony_assign.remove_executor('bench', $1), pg_current_xact_id()::text")
        .await
        .unwrap();
    let channel = colony_proto::Key::Broadcast {
        colony: "bench",
        executor_type: "x",
    }
    .channel();
    let mut out = Vec::with_capacity(trials);
    for i in 0..trials {
        let name = format!("{tag}-{i}");
        let token: String = client.query_one(&add, &[&name]).await.unwrap().get(0);
        // Every replica authenticates the token once, and caches it.
        for base in bases {
            let status = http
                .get(format!("{base}/v1/colonies/bench/stats"))
                .bearer_auth(&token)
                .send()
                .await
                .map(|r| r.status().as_u16());
            assert!(
                matches!(status, Ok(200)),
                "authenticating on {base}: {status:?}"
            );
        }
        // The executor parks a long-poll on every replica.
        let mut long_polls = Vec::new();
        for base in bases {
            let request = http
                .post(format!("{base}/v1/colonies/bench/assign?timeout=60"))
                .bearer_auth(&token);
            long_polls.push(tokio::spawn(async move {
                let answer = request.send().await;
                let at = Arrival::now();
                (answer.map_or(0, |r| r.status().as_u16()), at)
            }));
        }
        for base in bases {
            wait_parked(http, base, &channel).await;
        }
        // A probe per replica, each sure to have seen the token accepted before the removal.
        let mut probes = Vec::new();
        let mut armed = Vec::new();
        for base in bases {
            let (tx, rx) = oneshot::channel();
            probes.push(tokio::spawn(probe(
                http.clone(),
                base.clone(),
                token.clone(),
                tx,
            )));
            armed.push(rx);
        }
        for rx in armed {
            let _ = rx.await;
        }
        let sent = Instant::now();
        let row = client.query_one(&remove, &[&name]).await.unwrap();
        let mut refused = Vec::new();
        for p in probes {
            refused.push(p.await.unwrap());
        }
        let mut answered = Vec::new();
        for l in long_polls {
            answered.push(
                tokio::time::timeout(GIVE_UP, l)
                    .await
                    .ok()
                    .and_then(|r| r.ok()),
            );
        }
        out.push(Trial {
            sent,
            xid: row.get(1),
            refused,
            long_poll: answered,
        });
    }
    out
}

/// Asks `base` with `token` every [`PROBE_EVERY`] until it refuses the token (401), telling
/// `armed` when it has seen it accepted. `/v1/colonies/elsewhere/stats` is another colony's:
/// a replica that trusts the token answers 404 from its cache, without a query; one that has
/// forgotten it asks the database, which no longer knows it: 401.
async fn probe(
    http: reqwest::Client,
    base: String,
    token: String,
    armed: oneshot::Sender<()>,
) -> Option<Arrival> {
    let url = format!("{base}/v1/colonies/elsewhere/stats");
    let mut armed = Some(armed);
    let started = Instant::now();
    while started.elapsed() < GIVE_UP + Duration::from_secs(5) {
        let status = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .map(|r| r.status().as_u16());
        match status {
            Ok(401) => return Some(Arrival::now()),
            Ok(404) => {
                if let Some(armed) = armed.take() {
                    let _ = armed.send(());
                }
            }
            // Anything else (a refused connection on a loaded machine) is asked again.
            _ => {}
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    None
}

/// Waits until `base` has a long-poll parked on `channel`.
async fn wait_parked(http: &reqwest::Client, base: &str, channel: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = match http.get(format!("{base}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let parked = testkit::metrics_text::sum(
            &text,
            "colony_parked_waiters_by_key",
            &[("channel", channel)],
        );
        if parked >= 1.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "a long-poll did not park on {base}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The figures of one phase.
struct Figures {
    each: Latencies,
    last: Latencies,
    long_poll: Latencies,
    missed_probes: usize,
    missed_trials: usize,
    missed_long_polls: usize,
    overtaken: usize,
}

impl Figures {
    async fn of(client: &Client, tracked: bool, trials: &[Trial]) -> Figures {
        // Commit times in µs since the epoch, when PostgreSQL records them.
        let committed: Option<Vec<i64>> = if tracked {
            let xids: Vec<&str> = trials.iter().map(|t| t.xid.as_str()).collect();
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
        let since = |i: usize, a: &Arrival| -> Duration {
            match &committed {
                Some(c) => {
                    let at = a
                        .wall
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .as_micros() as i64;
                    Duration::from_micros((at - c[i]).max(0) as u64)
                }
                None => a.instant.duration_since(trials[i].sent),
            }
        };
        let mut f = Figures {
            each: Latencies::default(),
            last: Latencies::default(),
            long_poll: Latencies::default(),
            missed_probes: 0,
            missed_trials: 0,
            missed_long_polls: 0,
            overtaken: 0,
        };
        for (i, t) in trials.iter().enumerate() {
            let mut last = Some(Duration::ZERO);
            for r in &t.refused {
                match r {
                    Some(a) => {
                        let d = since(i, a);
                        f.each.record(d);
                        last = last.map(|l| l.max(d));
                    }
                    None => {
                        f.missed_probes += 1;
                        last = None;
                    }
                }
            }
            match last {
                Some(d) => f.last.record(d),
                None => f.missed_trials += 1,
            }
            for l in &t.long_poll {
                match l {
                    Some((401, a)) => f.long_poll.record(since(i, a)),
                    // The removal overtook the long-poll's first assign, whose query found no
                    // such executor: refused by the database, not by the control event.
                    Some((404, _)) => f.overtaken += 1,
                    _ => f.missed_long_polls += 1,
                }
            }
        }
        f
    }
}

/// A moment on both clocks: monotonic, and wall time to compare with commit timestamps.
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

/// The load phase's traffic: a submitter and HTTP executors of type "load".
struct Load {
    tasks: Vec<JoinHandle<()>>,
    done: Arc<AtomicU64>,
    started: Instant,
}

impl Load {
    async fn start(db: &Db, replicas: &[Replica]) -> Load {
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        let executors = db
            .executors(
                LOAD_EXECUTORS_PER_REPLICA * replicas.len(),
                "load-",
                "load",
                None,
            )
            .await;
        for (i, (name, token)) in executors.iter().enumerate() {
            let executor = HttpExecutor::new(&replicas[i % replicas.len()], name, token);
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    match executor.assign(1, 1).await {
                        Poll::Got(processes) => {
                            for p in processes {
                                if executor.close(p["id"].as_i64().unwrap_or(0)).await {
                                    done.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Poll::Empty => {}
                        Poll::Failed => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }));
        }
        let submitter = connect(&db.conninfo).await;
        tasks.push(tokio::spawn(async move {
            let submit = submitter
                .prepare("SELECT colony_assign.submit('bench', $1)")
                .await
                .unwrap();
            let spec = json!({"funcname": "load", "conditions": {"executortype": "load"}});
            let mut tick = tokio::time::interval(LOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let _ = submitter.query_one(&submit, &[&spec]).await;
            }
        }));
        Load {
            tasks,
            done,
            started: Instant::now(),
        }
    }

    /// Stops the traffic; returns the processes completed per second while it ran.
    fn stop(self) -> f64 {
        for t in &self.tasks {
            t.abort();
        }
        self.done.load(Ordering::Relaxed) as f64 / self.started.elapsed().as_secs_f64()
    }
}
