//! Database failover on pg_auto_failover (issue 12): steady submit + assign + close load, SQL
//! direct through a multi-host connection string and HTTP through coordinator replicas, then
//! `kill -9` of the primary's postmaster, and what must hold afterwards:
//!
//! - every submit a client got an id for exists, and no retried submit made a second process
//!   (retries carry the submit's idempotency key);
//! - no close was acknowledged twice for one process, and every acknowledged close is SUCCESS;
//! - nothing acknowledged is left RUNNING once the load has stopped and a `reap()` has run with
//!   the deadlines moved past (claims whose answer was lost in the failover are requeued);
//! - the coordinators and the SQL-direct clients work on the new primary by themselves.
//!
//! It prints the write outage (kill to the first acknowledged submit on the new primary), the
//! time until a long-poll parked on each replica gets work submitted after the kill, and the
//! unknown-outcome submits (an error, yet committed: the retry returned the first call's id).
//!
//! Ignored by default: it needs the setup `bash scripts/ha up` starts. `bash scripts/ha test`
//! runs it (`cargo test -p e2e -- --ignored ha::`) with:
//!
//! - `HA_DATABASE_URL`: the multi-host connection string (`target_session_attrs=read-write`);
//! - `HA_COORDINATOR_URLS`: the coordinator replicas' base URLs, comma-separated;
//! - `HA_SCRIPT`: scripts/ha, whose `kill-primary MODE` kills the primary's postmaster (or, with
//!   MODE `node`, its pg_autoctl too) and prints `kill NODE PORT EPOCH`, then `failover ...` or
//!   `local-restart ...` (pg_autoctl restarted Postgres before the monitor saw it down). After a
//!   local restart the test kills again; the third kill takes the whole node, which always fails
//!   over;
//! - `HA_KILL` (optional): `node` to kill the whole node from the first kill;
//! - `HA_RESULTS` (optional): a file the summary lines are appended to.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use testkit::{metrics_text, try_connect as connect, within};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Config, Notification};

const SUBMITTERS: usize = 3;
const SQL_EXECUTORS: usize = 1;
/// Pause between one client's submits: a steady ~100 submits/s in all, which the executors
/// keep up with on a 2-core machine.
const SUBMIT_PACE: Duration = Duration::from_millis(25);
/// Pause before retrying after an error (reconnects included).
const RETRY: Duration = Duration::from_millis(50);
/// How long a client keeps retrying one submit or close before it gives up (a violation).
const GIVE_UP: Duration = Duration::from_secs(90);
/// Kills until a failover; the last one takes the whole node.
const KILL_ATTEMPTS: usize = 3;
/// From the kill until every client and replica has worked on the new primary.
const RESUME_DEADLINE: Duration = Duration::from_secs(60);

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run this test through `bash scripts/ha test`")
    })
}

/// One acknowledged submit: when its (last) attempt began and was answered, and which server
/// answered it (port, postmaster start).
struct Ack {
    id: i64,
    started: f64,
    done: f64,
    port: i32,
    postmaster_started: f64,
}

/// What a submit's transaction learnt: id, port, postmaster start, whether an earlier attempt
/// had committed it.
type Submitted = (i64, i32, f64, bool);

/// What the clients saw, shared by all of them. Locked briefly, never across an await.
#[derive(Default)]
struct Seen {
    submits: Vec<Ack>,
    failed_submit_attempts: u64,
    /// Submits that needed more than one attempt.
    retried_submits: u64,
    /// Retried submits whose failed attempt had committed (the retry returned its id).
    unknown_outcome: u64,
    /// Acknowledged closes per process.
    closes: HashMap<i64, u32>,
    /// Retried closes that found the process already closed: the failed attempt had committed.
    closes_already_done: u64,
    failed_close_attempts: u64,
    failed_assign_attempts: u64,
    /// HTTP answers during the load by status, other than 200 and 204.
    http_statuses: HashMap<u16, u64>,
    /// Last acknowledged submit or close per client (epoch seconds), with the server port for
    /// the SQL-direct ones.
    last_ok: HashMap<String, f64>,
    /// What must not happen at all (a refused close, a submit given up).
    violations: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

fn seen(shared: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    shared.lock().expect("a client panicked")
}

async fn submit_once(
    client: &mut Option<Client>,
    config: &Config,
    colony: &str,
    spec: &Value,
    key: &str,
) -> Result<Submitted, tokio_postgres::Error> {
    if client.is_none() {
        *client = Some(connect(config).await?.0);
    }
    let client = client.as_mut().expect("connected above");
    let tx = client.transaction().await?;
    let id: i64 = tx
        .query_one(
            "SELECT colony_assign.submit($1, $2, $3)",
            &[&colony, spec, &key],
        )
        .await?
        .get(0);
    // submitted_at is the creating transaction's start: before now() when an earlier attempt
    // of this submit committed and the key returned its id.
    let row = tx
        .query_one(
            "SELECT p.submitted_at < now(), inet_server_port(),
                    extract(epoch FROM pg_postmaster_start_time())::float8
             FROM colony_assign.processes p WHERE p.id = $1",
            &[&id],
        )
        .await?;
    tx.commit().await?;
    Ok((id, row.get(1), row.get(2), row.get(0)))
}

/// Submits at a steady pace through the multi-host string; reconnects on any error and
/// retries the submit with the same idempotency key until it is acknowledged.
async fn submitter(
    who: String,
    config: Config,
    colony: String,
    stop: Arc<AtomicBool>,
    shared: Shared,
) {
    let mut client = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("{who}-{n}");
        let spec = json!({"funcname": "work", "label": key, "maxexectime": 600, "maxretries": -1,
                          "conditions": {"executortype": "w"}});
        let first = tokio::time::Instant::now();
        let mut failures = 0;
        loop {
            let started = epoch();
            match submit_once(&mut client, &config, &colony, &spec, &key).await {
                Ok((id, port, postmaster_started, earlier)) => {
                    let mut s = seen(&shared);
                    s.submits.push(Ack {
                        id,
                        started,
                        done: epoch(),
                        port,
                        postmaster_started,
                    });
                    if failures > 0 {
                        s.retried_submits += 1;
                        s.unknown_outcome += u64::from(earlier);
                    }
                    s.last_ok.insert(who.clone(), epoch());
                    break;
                }
                Err(e) => {
                    failures += 1;
                    client = None;
                    let mut s = seen(&shared);
                    s.failed_submit_attempts += 1;
                    if first.elapsed() > GIVE_UP {
                        s.violations.push(format!(
                            "{who}: submit {key} not acknowledged in {GIVE_UP:?}: {e}"
                        ));
                        return;
                    }
                }
            }
            tokio::time::sleep(RETRY).await;
        }
        tokio::time::sleep(SUBMIT_PACE).await;
    }
}

/// Records the answer to one close attempt; whether the process is done with (closed now or
/// earlier). `retried`: an earlier attempt for it failed without an answer.
fn close_answered(shared: &Shared, who: &str, id: i64, retried: bool, outcome: Result<(), String>) {
    let mut s = seen(shared);
    match outcome {
        Ok(()) => {
            *s.closes.entry(id).or_default() += 1;
            s.last_ok.insert(who.to_owned(), epoch());
        }
        Err(e) if retried && e.contains("already closed") => s.closes_already_done += 1,
        Err(e) => s
            .violations
            .push(format!("{who}: close of {id} refused: {e}")),
    }
}

/// An SQL-direct executor: LISTEN on its channels, assign, close, wait for a notification
/// when there is nothing. On any error: reconnect, LISTEN again, close what it holds, assign
/// again.
async fn sql_executor(
    who: String,
    config: Config,
    colony: String,
    stop: Arc<AtomicBool>,
    shared: Shared,
) {
    let mut conn: Option<(Client, mpsc::UnboundedReceiver<Notification>)> = None;
    let mut held: Vec<i64> = Vec::new();
    let mut retried: HashSet<i64> = HashSet::new();
    let since = tokio::time::Instant::now();
    'session: loop {
        if conn.is_none() {
            match listen(&config, &colony, &who).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    if stop.load(Ordering::Relaxed) && held.is_empty()
                        || since.elapsed() > GIVE_UP * 2
                    {
                        return;
                    }
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        let (client, notifications) = conn.as_mut().expect("connected above");
        while let Some(&id) = held.last() {
            let result = client
                .execute(
                    "SELECT colony_assign.close($1, $2, $3, $4)",
                    &[&id, &who, &json!({"by": who}), &colony],
                )
                .await;
            match result {
                Ok(_) => close_answered(&shared, &who, id, retried.contains(&id), Ok(())),
                Err(e) if e.code().is_some_and(|c| c.code() == "55000") => close_answered(
                    &shared,
                    &who,
                    id,
                    retried.contains(&id),
                    Err(format!("already closed: {e}")),
                ),
                Err(e) if e.code().is_some() && !client.is_closed() => {
                    close_answered(&shared, &who, id, retried.contains(&id), Err(e.to_string()))
                }
                Err(_) => {
                    retried.insert(id);
                    seen(&shared).failed_close_attempts += 1;
                    conn = None;
                    tokio::time::sleep(RETRY).await;
                    continue 'session;
                }
            }
            held.pop();
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match client
            .query(
                "SELECT id FROM colony_assign.assign($1, $2, 5)",
                &[&colony, &who],
            )
            .await
        {
            Ok(rows) if rows.is_empty() => {
                // Notifications are hints: wait for one, at most a second, then assign again.
                if let Ok(None) =
                    tokio::time::timeout(Duration::from_secs(1), notifications.recv()).await
                {
                    conn = None; // the connection ended
                }
            }
            Ok(rows) => held = rows.iter().map(|r| r.get(0)).collect(),
            Err(_) => {
                seen(&shared).failed_assign_attempts += 1;
                conn = None;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn listen(
    config: &Config,
    colony: &str,
    who: &str,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), tokio_postgres::Error> {
    let (client, notifications) = connect(config).await?;
    let channels: Vec<String> = client
        .query("SELECT colony_assign.channels($1, $2)", &[&colony, &who])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let sql: String = channels
        .iter()
        .map(|c| format!("LISTEN \"{c}\";"))
        .collect();
    client.batch_execute(&sql).await?;
    Ok((client, notifications))
}

/// An HTTP executor on one replica: long-poll, close each process, retry on 503 (no primary)
/// or a broken connection.
async fn http_executor(
    who: String,
    base: String,
    token: String,
    colony: String,
    stop: Arc<AtomicBool>,
    shared: Shared,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let mut held: Vec<i64> = Vec::new();
    let mut retried: HashSet<i64> = HashSet::new();
    let since = tokio::time::Instant::now();
    loop {
        while let Some(&id) = held.last() {
            let response = http
                .post(format!("{base}/v1/processes/{id}/close"))
                .bearer_auth(&token)
                .json(&json!({"output": {"by": who}}))
                .send()
                .await;
            let status = response.ok().map(|r| r.status().as_u16());
            match status {
                Some(204) => close_answered(&shared, &who, id, retried.contains(&id), Ok(())),
                Some(409) => close_answered(
                    &shared,
                    &who,
                    id,
                    retried.contains(&id),
                    Err("already closed (409)".into()),
                ),
                Some(500 | 503) | None if since.elapsed() < GIVE_UP * 2 => {
                    retried.insert(id);
                    {
                        let mut s = seen(&shared);
                        s.failed_close_attempts += 1;
                        if let Some(status) = status {
                            *s.http_statuses.entry(status).or_default() += 1;
                        }
                    }
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                other => close_answered(
                    &shared,
                    &who,
                    id,
                    retried.contains(&id),
                    Err(format!("HTTP {other:?}")),
                ),
            }
            held.pop();
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let response = http
            .post(format!(
                "{base}/v1/colonies/{colony}/assign?timeout=2&max=5"
            ))
            .bearer_auth(&token)
            .send()
            .await;
        match response {
            Ok(r) if r.status() == 200 => match r.json::<Vec<Value>>().await {
                Ok(processes) => held = processes.iter().filter_map(|p| p["id"].as_i64()).collect(),
                Err(_) => seen(&shared).failed_assign_attempts += 1, // a lost body: reap() requeues it
            },
            Ok(r) if r.status() == 204 => {}
            Ok(r) => {
                {
                    let mut s = seen(&shared);
                    s.failed_assign_attempts += 1;
                    *s.http_statuses.entry(r.status().as_u16()).or_default() += 1;
                }
                tokio::time::sleep(RETRY).await;
            }
            Err(_) => {
                seen(&shared).failed_assign_attempts += 1;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Long-polls `base` as the probe executor until it gets a process: when, and which.
async fn probe(base: String, token: String, colony: String) -> (f64, i64) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("HTTP client");
    let since = tokio::time::Instant::now();
    while since.elapsed() < GIVE_UP {
        let response = http
            .post(format!("{base}/v1/colonies/{colony}/assign?timeout=60"))
            .bearer_auth(&token)
            .send()
            .await;
        if let Ok(r) = response
            && r.status() == 200
            && let Ok(processes) = r.json::<Vec<Value>>().await
            && let Some(id) = processes.first().and_then(|p| p["id"].as_i64())
        {
            return (epoch(), id);
        }
        tokio::time::sleep(RETRY).await; // 503 while there is no primary, or a broken connection
    }
    panic!("the probe on {base} got nothing in {GIVE_UP:?}");
}

async fn metric(http: &reqwest::Client, base: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    match http.get(format!("{base}/metrics")).send().await {
        Ok(r) => metrics_text::sum(&r.text().await.unwrap_or_default(), name, labels),
        Err(_) => f64::NAN,
    }
}

/// One `scripts/ha kill-primary`: (outcome, node, its port, kill time). `killed` hears the
/// kill time as soon as the script has killed.
async fn kill_primary(
    script: &str,
    mode: &str,
    killed: tokio::sync::oneshot::Sender<f64>,
) -> (String, String, i32, f64) {
    let mut child = tokio::process::Command::new("bash")
        .args([script, "kill-primary", mode])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run scripts/ha kill-primary");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut killed = Some(killed);
    let mut last = None;
    while let Some(line) = lines.next_line().await.expect("read kill-primary's output") {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [what, node, port, at] = fields[..] {
            let parsed = (
                what.to_owned(),
                node.to_owned(),
                port.parse().expect("port"),
                at.parse().expect("epoch"),
            );
            if what == "kill"
                && let Some(tx) = killed.take()
            {
                let _ = tx.send(parsed.3);
            }
            last = Some(parsed);
        }
    }
    assert!(
        child.wait().await.expect("kill-primary ran").success(),
        "scripts/ha kill-primary failed"
    );
    last.filter(|l| l.0 != "kill")
        .expect("kill-primary printed its outcome")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the pg_auto_failover setup of `bash scripts/ha up`; run by `bash scripts/ha test`"]
async fn failover_loses_no_acknowledged_work_and_clients_resume_on_the_new_primary() {
    let config: Config = var("HA_DATABASE_URL").parse().expect("HA_DATABASE_URL");
    let replicas: Vec<String> = var("HA_COORDINATOR_URLS")
        .split(',')
        .map(str::to_owned)
        .collect();
    let script = var("HA_SCRIPT");
    let kill_mode = std::env::var("HA_KILL").unwrap_or_else(|_| "postmaster".into());
    let mut report: Vec<String> = Vec::new();
    let mut violations: Vec<String> = Vec::new();

    let (admin, _) = connect(&config)
        .await
        .expect("connect through HA_DATABASE_URL");
    let colony = format!("ha-test-{}", epoch() as u64);
    admin
        .execute("SELECT colony_assign.add_colony($1)", &[&colony])
        .await
        .unwrap();
    let add_executor = async |name: &str, executor_type: &str| -> String {
        admin
            .query_one(
                "SELECT colony_assign.add_executor($1, $2, $3)",
                &[&colony, &name, &executor_type],
            )
            .await
            .unwrap()
            .get(0)
    };

    // The load.
    let stop = Arc::new(AtomicBool::new(false));
    let shared: Shared = Arc::default();
    let mut clients = Vec::new();
    let mut names = Vec::new();
    for i in 0..SUBMITTERS {
        let who = format!("submitter-{i}");
        names.push(who.clone());
        clients.push(tokio::spawn(submitter(
            who,
            config.clone(),
            colony.clone(),
            stop.clone(),
            shared.clone(),
        )));
    }
    for i in 0..SQL_EXECUTORS {
        let who = format!("sql-executor-{i}");
        add_executor(&who, "w").await;
        names.push(who.clone());
        clients.push(tokio::spawn(sql_executor(
            who,
            config.clone(),
            colony.clone(),
            stop.clone(),
            shared.clone(),
        )));
    }
    for (r, base) in replicas.iter().enumerate() {
        let who = format!("http-executor-r{r}");
        let token = add_executor(&who, "w").await;
        names.push(who.clone());
        clients.push(tokio::spawn(http_executor(
            who,
            base.clone(),
            token,
            colony.clone(),
            stop.clone(),
            shared.clone(),
        )));
    }
    let warm = within(Duration::from_secs(30), || {
        let s = seen(&shared);
        std::future::ready(
            s.submits.len() >= 100 && names.iter().all(|n| s.last_ok.contains_key(n)),
        )
    })
    .await;
    assert!(
        warm,
        "the load did not get going: {:?}",
        seen(&shared).last_ok
    );

    // Kill the primary until the monitor fails over (a local restart by pg_autoctl can win the
    // race), with a probe long-poll parked on every replica each time.
    let http = reqwest::Client::new();
    let mut probes = Vec::new();
    for r in 0..replicas.len() {
        let name = format!("probe-r{r}");
        let token = add_executor(&name, &name).await;
        let channel: String = admin
            .query_one(
                "SELECT colony_assign.channel($1, $2, NULL)",
                &[&colony, &name],
            )
            .await
            .unwrap()
            .get(0);
        probes.push((name, token, channel));
    }
    drop(admin); // it dies with the primary
    let mut failover = None;
    for round in 1..=KILL_ATTEMPTS {
        let mut parked = Vec::new();
        for (r, (_, token, channel)) in probes.iter().enumerate() {
            parked.push(tokio::spawn(probe(
                replicas[r].clone(),
                token.clone(),
                colony.clone(),
            )));
            let up = within(Duration::from_secs(30), || async {
                metric(
                    &http,
                    &replicas[r],
                    "colony_parked_waiters_by_key",
                    &[("channel", channel)],
                )
                .await
                    == 1.0
            })
            .await;
            assert!(up, "the probe did not park on {}", replicas[r]);
        }
        let mode = if round == KILL_ATTEMPTS {
            "node".to_owned()
        } else {
            kill_mode.clone()
        };
        let (killed_tx, killed_rx) = tokio::sync::oneshot::channel();
        let kill = tokio::spawn({
            let (script, mode) = (script.clone(), mode.clone());
            async move { kill_primary(&script, &mode, killed_tx).await }
        });
        let t_kill = killed_rx.await.expect("the script killed the primary");
        // Probe work, submitted from the kill on (retried with its key until acknowledged).
        let submit_probes = tokio::spawn({
            let (config, colony, shared) = (config.clone(), colony.clone(), shared.clone());
            let types: Vec<String> = probes.iter().map(|p| p.0.clone()).collect();
            async move {
                let mut client = None;
                for t in types {
                    let key = format!("{t}-round-{round}");
                    let spec = json!({"funcname": "probe", "conditions": {"executortype": t}});
                    let since = tokio::time::Instant::now();
                    while submit_once(&mut client, &config, &colony, &spec, &key)
                        .await
                        .is_err()
                    {
                        client = None;
                        assert!(
                            since.elapsed() < GIVE_UP,
                            "probe submit {key} never acknowledged"
                        );
                        tokio::time::sleep(RETRY).await;
                    }
                }
                drop(shared);
            }
        });
        let (outcome, node, port, at) = kill.await.expect("kill-primary task");
        assert!((at - t_kill).abs() < 1e-6);
        submit_probes.await.expect("probe submits");
        let mut wakes = Vec::new();
        for (r, p) in parked.into_iter().enumerate() {
            let (got, id) = p.await.expect("probe task");
            wakes.push(format!(
                "{} {:.2} s (process {id})",
                replicas[r],
                got - t_kill
            ));
        }
        // The write outage: the kill to the first acknowledged submit that the new primary (or
        // the restarted one) served. A backend of the killed postmaster can still finish a
        // commit the standby confirms (it is replicated, nothing is lost): not the end of the outage.
        let after =
            |a: &Ack| a.started > t_kill && (a.port != port || a.postmaster_started > t_kill);
        let ok = within(RESUME_DEADLINE, || {
            std::future::ready(seen(&shared).submits.iter().any(after))
        })
        .await;
        let (outage, on_port) = {
            let s = seen(&shared);
            s.submits
                .iter()
                .filter(|a| after(a))
                .map(|a| (a.done, a.port))
                .fold((f64::NAN, 0), |(t, p), (at, port)| {
                    if t.is_nan() || at < t {
                        (at, port)
                    } else {
                        (t, p)
                    }
                })
        };
        assert!(
            ok,
            "no submit acknowledged within {RESUME_DEADLINE:?} of kill #{round}"
        );
        let line = format!(
            "kill -9 #{round} of {node}'s {} (:{port}): {outcome}; write outage {:.2} s (first acknowledged submit, on :{on_port}); wake-ups flow again: {}",
            if mode == "node" {
                "pg_autoctl and postmaster"
            } else {
                "postmaster"
            },
            outage - t_kill,
            wakes.join(", ")
        );
        println!("{line}");
        report.push(line);
        if outcome == "failover" {
            failover = Some((t_kill, port));
            break;
        }
    }
    let Some((t_kill, old_port)) = failover else {
        panic!("no failover in {KILL_ATTEMPTS} kills: {report:?}");
    };

    // Everyone works on the new primary by themselves.
    let resumed = within(RESUME_DEADLINE, || {
        let s = seen(&shared);
        std::future::ready(
            names
                .iter()
                .all(|n| s.last_ok.get(n).is_some_and(|t| *t > t_kill))
                && s.submits
                    .iter()
                    .any(|a| a.started > t_kill && a.port != old_port),
        )
    })
    .await;
    {
        let s = seen(&shared);
        let lagging: Vec<&String> = names
            .iter()
            .filter(|n| !s.last_ok.get(*n).is_some_and(|t| *t > t_kill))
            .collect();
        if !resumed {
            violations.push(format!(
                "not resumed on the new primary within {RESUME_DEADLINE:?}: {lagging:?}"
            ));
        }
        report.push(format!(
            "resumed after the kill: {}/{} clients (submitters {SUBMITTERS}, SQL-direct executors {SQL_EXECUTORS}, HTTP executors {} on as many replicas)",
            names.len() - lagging.len(),
            names.len(),
            replicas.len()
        ));
    }
    // Steady load on the new primary for a while before stopping it.
    let resumed_at = epoch();
    let steady = within(RESUME_DEADLINE, || {
        let s = seen(&shared);
        std::future::ready(
            s.submits.iter().filter(|a| a.started > resumed_at).count() >= 200
                && names
                    .iter()
                    .all(|n| s.last_ok.get(n).is_some_and(|t| *t > resumed_at)),
        )
    })
    .await;
    if !steady {
        violations.push(format!(
            "the load did not keep going on the new primary: {:?}",
            seen(&shared).last_ok
        ));
    }
    for base in &replicas {
        let reconnects = metric(&http, base, "colony_listener_reconnects_total", &[]).await;
        let connected = metric(&http, base, "colony_listener_connected", &[]).await;
        report.push(format!(
            "{base}: LISTEN reconnects {reconnects}, connected {connected}"
        ));
        if connected != 1.0 || reconnects < 1.0 {
            violations.push(format!("{base}: LISTEN connection not re-established"));
        }
    }

    // Stop the load; the executors close what they hold first.
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        tokio::time::timeout(GIVE_UP * 2, client)
            .await
            .expect("a client stopped in time")
            .expect("a client task panicked");
    }

    // The checks, on the new primary.
    let (check, _) = connect(&config).await.expect("connect to the new primary");
    let s = std::mem::take(&mut *seen(&shared));
    violations.extend(s.violations.iter().cloned());
    let acked: Vec<i64> = s.submits.iter().map(|a| a.id).collect();
    let distinct: HashSet<i64> = acked.iter().copied().collect();
    let present: i64 = check
        .query_one(
            "SELECT count(*) FROM colony_assign.processes WHERE id = ANY($1)",
            &[&acked],
        )
        .await
        .unwrap()
        .get(0);
    let lost = distinct.len() as i64 - present;
    if lost != 0 {
        violations.push(format!("{lost} acknowledged submits lost"));
    }
    if distinct.len() != acked.len() {
        violations.push(format!(
            "{} submits acknowledged with an id another submit got",
            acked.len() - distinct.len()
        ));
    }
    let duplicated: i64 = check
        .query_one(
            "SELECT count(*) FROM (SELECT label FROM colony_assign.processes WHERE colony = $1 AND label IS NOT NULL
                                   GROUP BY label HAVING count(*) > 1) d",
            &[&colony],
        )
        .await
        .unwrap()
        .get(0);
    if duplicated != 0 {
        violations.push(format!("{duplicated} submits made more than one process"));
    }
    let closed_twice = s.closes.values().filter(|n| **n > 1).count();
    if closed_twice != 0 {
        violations.push(format!("{closed_twice} processes closed twice"));
    }
    let closed: Vec<i64> = s.closes.keys().copied().collect();
    let not_success: i64 = check
        .query_one(
            "SELECT count(*) FROM colony_assign.processes WHERE id = ANY($1) AND state <> 2",
            &[&closed],
        )
        .await
        .unwrap()
        .get(0);
    let closed_present: i64 = check
        .query_one(
            "SELECT count(*) FROM colony_assign.processes WHERE id = ANY($1)",
            &[&closed],
        )
        .await
        .unwrap()
        .get(0);
    if not_success != 0 || closed_present != closed.len() as i64 {
        violations.push(format!(
            "acknowledged closes not SUCCESS: {not_success}, missing: {}",
            closed.len() as i64 - closed_present
        ));
    }
    // Claims whose answer the failover swallowed are RUNNING with nobody holding them (every
    // executor has stopped and closed what it held). With their deadlines moved past, reap()
    // requeues them.
    let stranded: i64 = check
        .query_one(
            "SELECT count(*) FROM colony_assign.processes WHERE colony = $1 AND state = 1",
            &[&colony],
        )
        .await
        .unwrap()
        .get(0);
    check
        .execute(
            "UPDATE colony_assign.processes SET exec_deadline = now() - interval '1 second'
             WHERE colony = $1 AND state = 1",
            &[&colony],
        )
        .await
        .unwrap();
    while check
        .query_one("SELECT more FROM colony_assign.reap()", &[])
        .await
        .unwrap()
        .get::<_, bool>(0)
    {}
    let still_running: i64 = check
        .query_one(
            "SELECT count(*) FROM colony_assign.processes WHERE id = ANY($1) AND state = 1",
            &[&acked],
        )
        .await
        .unwrap()
        .get(0);
    if still_running != 0 {
        violations.push(format!(
            "{still_running} acknowledged processes still RUNNING after reap()"
        ));
    }

    report.push(format!(
        "acknowledged submits: {} (lost {lost}, duplicated {duplicated}); failed submit attempts {}; submits retried {}, of which unknown outcome (failed, yet committed; the key returned the first id) {}",
        acked.len(),
        s.failed_submit_attempts,
        s.retried_submits,
        s.unknown_outcome
    ));
    report.push(format!(
        "acknowledged closes: {} (closed twice {closed_twice}, not SUCCESS {not_success}); failed close attempts {}, retried closes that found the process already closed {}",
        closed.len(),
        s.failed_close_attempts,
        s.closes_already_done
    ));
    report.push(format!(
        "claims stranded by the failover (RUNNING, held by nobody): {stranded}; acknowledged processes RUNNING after reap() with deadlines moved past: {still_running}"
    ));
    let mut statuses: Vec<_> = s.http_statuses.iter().collect();
    statuses.sort();
    report.push(format!(
        "failed assign attempts {}; HTTP error answers by status: {statuses:?}",
        s.failed_assign_attempts
    ));
    for v in &violations {
        report.push(format!("VIOLATION: {v}"));
    }
    let text = report.join("\n");
    println!("{text}");
    if let Ok(path) = std::env::var("HA_RESULTS") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open HA_RESULTS");
        writeln!(file, "{text}").expect("write HA_RESULTS");
    }
    assert!(violations.is_empty(), "{violations:#?}");
}
