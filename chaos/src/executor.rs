//! Executors: over HTTP (colony-client with every replica's URL, failing over between them) and
//! SQL-direct (tokio-postgres, `login(token)`, LISTEN on `channels()`). Each records every claim
//! and how each run ended (records.rs), runs a process for the time its spec says, heartbeats
//! during long runs, and closes or fails it, retrying only what is safe to retry.

use crate::plan::COLONY;
use crate::records::{End, Event, Recorder, now_us};
use colony_client::{Client, Error as ClientError};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Config, NoTls, Statement};

/// How long an executor keeps trying to close or fail before it records the outcome unknown.
const FINISH_FOR: Duration = Duration::from_secs(120);

/// What an executor's fail says (the checker tells it from the reaper's deadline errors).
pub const FAIL_MESSAGE: &str = "chaos: asked to fail";

/// A heartbeat that takes longer than this is abandoned (the next one will do).
const HEARTBEAT_WITHIN: Duration = Duration::from_secs(1);

/// A process as an executor runs it.
struct Job {
    id: i64,
    retries: i32,
    deadline: Option<i64>,
    work: Duration,
    fail: bool,
}

impl Job {
    fn new(id: i64, retries: i32, deadline: Option<i64>, spec: &Value) -> Job {
        let kwargs = &spec["kwargs"];
        let overrun = kwargs["overrun"].as_i64().unwrap_or(0);
        let work = if i64::from(retries) < overrun {
            // Past the deadline by a second: the reaper requeues it (or fails it) meanwhile.
            let exec_s = spec["maxexectime"].as_u64().unwrap_or(0);
            Duration::from_millis(exec_s * 1000 + 1000)
        } else {
            Duration::from_millis(kwargs["work_ms"].as_u64().unwrap_or(0))
        };
        Job {
            id,
            retries,
            deadline,
            work,
            fail: kwargs["fail"].as_bool().unwrap_or(false),
        }
    }

    fn claim(&self, executor: &str) -> Event {
        Event::Claim {
            executor: executor.to_owned(),
            id: self.id,
            at: now_us(),
            retries: self.retries,
            deadline: self.deadline,
        }
    }
}

/// Sleeps for the job's work time, heartbeating every second of a long one.
async fn work<F, Fut>(job: &Job, mut heartbeat: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let until = Instant::now() + job.work;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        if Instant::now() < until {
            let _ = tokio::time::timeout(HEARTBEAT_WITHIN, heartbeat()).await;
        }
    }
}

/// RFC 3339 text (as PostgreSQL renders a timestamptz in JSON) to µs since the epoch.
fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// An HTTP executor's colony-client: every replica, short request timeouts so that a replica
/// that stopped answering is left quickly, and a retry budget that outlasts a PostgreSQL
/// restart.
pub fn http_client(replicas: &[colony_client::Url], token: &str) -> Client {
    Client::builder(replicas.to_vec(), token)
        .request_timeout(Duration::from_secs(5))
        .retry_for(Duration::from_secs(60))
        .build()
        .expect("an HTTP executor's client")
}

/// Runs an HTTP executor forever.
pub async fn run_http(name: String, client: Client, recorder: Recorder, long_poll: Duration) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match client.assign(COLONY, long_poll, 1).await {
            Ok(processes) => {
                backoff = Duration::from_millis(50);
                for p in processes {
                    let deadline = p.exec_deadline.as_deref().and_then(parse_time);
                    let job = Job::new(p.id, p.retries, deadline, &p.spec);
                    recorder.push(job.claim(&name));
                    work(&job, || async {
                        let _ = client.heartbeat().await;
                    })
                    .await;
                    let at = now_us();
                    let end = finish_http(&client, &job).await;
                    recorder.push(Event::Done {
                        executor: name.clone(),
                        id: job.id,
                        at,
                        end,
                    });
                }
            }
            Err(_) => {
                // Every replica failed for the client's whole retry budget (PostgreSQL down):
                // try again, backing off.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Closes (or fails) the job over HTTP: an answer is final, anything else is retried.
async fn finish_http(client: &Client, job: &Job) -> End {
    let give_up = Instant::now() + FINISH_FOR;
    loop {
        let result = if job.fail {
            client.fail(job.id, &[FAIL_MESSAGE]).await
        } else {
            client.close(job.id, Some(json!("ok"))).await
        };
        match result {
            Ok(()) if job.fail => return End::Failed,
            Ok(()) => return End::Closed,
            // A 4xx is the extension's answer: not this executor's process any more.
            Err(ClientError::Api { status, .. }) if status < 500 => return End::Refused,
            Err(_) if Instant::now() >= give_up => return End::Unknown,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Claims SQL-direct executors found with `running()` on a new session, not having received
/// them (their answer died with the previous session).
pub static RECOVERED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Connection settings of a SQL-direct executor.
pub fn sql_config(port: u16, name: &str) -> Config {
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("chaos_executor")
        .dbname(crate::cluster::DATABASE)
        .application_name(format!("chaos-sql {name}"))
        .connect_timeout(Duration::from_secs(2))
        .keepalives_idle(Duration::from_secs(5));
    config
}

/// One SQL-direct session: logged in, LISTENing on the executor's channels.
struct Session {
    client: tokio_postgres::Client,
    wakes: mpsc::UnboundedReceiver<()>,
    /// Not yet asked which processes are RUNNING for the executor (`running()`, once per
    /// session: a claim whose answer died with the previous session is only found that way).
    fresh: bool,
    assign: Statement,
    running: Statement,
    close: Statement,
    fail: Statement,
    heartbeat: Statement,
    state: Statement,
}

impl Session {
    async fn open(
        config: &Config,
        name: &str,
        token: &str,
    ) -> Result<Session, tokio_postgres::Error> {
        let (client, mut connection) = config.connect(NoTls).await?;
        let (tx, wakes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(_) = message {
                    let _ = tx.send(());
                }
            }
        });
        client
            .query("SELECT 1 FROM colony_assign.login($1)", &[&token])
            .await?;
        let channels = client
            .query("SELECT colony_assign.channels($1, $2)", &[&COLONY, &name])
            .await?;
        let listen: String = channels
            .iter()
            .map(|r| format!("LISTEN \"{}\";", r.get::<_, String>(0)))
            .collect();
        client.batch_execute(&listen).await?;
        Ok(Session {
            fresh: true,
            running: client
                .prepare(
                    "SELECT id, retries, (extract(epoch FROM exec_deadline) * 1000000)::int8, spec
                     FROM colony_assign.running($1, $2)",
                )
                .await?,
            assign: client
                .prepare(
                    "SELECT id, retries, (extract(epoch FROM exec_deadline) * 1000000)::int8, spec
                     FROM colony_assign.assign($1, $2, 1)",
                )
                .await?,
            close: client
                .prepare("SELECT colony_assign.close($1, $2, $3::jsonb, $4)")
                .await?,
            fail: client
                .prepare("SELECT colony_assign.fail($1, $2, $3::text[], $4)")
                .await?,
            heartbeat: client
                .prepare("SELECT colony_assign.heartbeat($1, $2)")
                .await?,
            state: client
                .prepare("SELECT state, assigned_executor, errors FROM colony_assign.process($1)")
                .await?,
            client,
            wakes,
        })
    }
}

/// Whether a failed call means the session is gone (reconnect) rather than an answer.
fn session_lost(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || code.code().starts_with("08")
        }
    }
}

/// A SQL-direct executor: its identity and how to reach PostgreSQL.
pub struct SqlExecutor {
    pub name: String,
    pub token: String,
    pub config: Config,
    pub recorder: Recorder,
}

impl SqlExecutor {
    /// A working session, reconnecting (with backoff) until there is one.
    async fn session(&self) -> Session {
        let mut backoff = Duration::from_millis(50);
        loop {
            match Session::open(&self.config, &self.name, &self.token).await {
                Ok(session) => return session,
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Runs forever: on each new session, first what is RUNNING for it (claims whose answer
    /// died with the last session: it holds nothing between jobs); then assign; on nothing,
    /// wait for a notification (at most a second: they are hints) and assign again.
    pub async fn run(self) {
        let mut session = self.session().await;
        loop {
            let statement = if session.fresh {
                &session.running
            } else {
                &session.assign
            };
            let rows = match session
                .client
                .query(statement, &[&COLONY, &self.name])
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    if session_lost(&e) || session.client.is_closed() {
                        session = self.session().await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            };
            if std::mem::take(&mut session.fresh) {
                if rows.is_empty() {
                    continue;
                }
                RECOVERED.fetch_add(rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            if rows.is_empty() {
                // Drain what came meanwhile, then wait for the next.
                while session.wakes.try_recv().is_ok() {}
                let _ = tokio::time::timeout(Duration::from_secs(1), session.wakes.recv()).await;
                continue;
            }
            for row in rows {
                let spec: Value = row.get(3);
                let job = Job::new(row.get(0), row.get(1), row.get(2), &spec);
                self.recorder.push(job.claim(&self.name));
                work(&job, || async {
                    let _ = session
                        .client
                        .execute(&session.heartbeat, &[&COLONY, &self.name])
                        .await;
                })
                .await;
                let at = now_us();
                let end = self.finish(&mut session, &job).await;
                self.recorder.push(Event::Done {
                    executor: self.name.clone(),
                    id: job.id,
                    at,
                    end,
                });
            }
        }
    }

    /// Closes (or fails) the job; after a lost session, reconnects and looks at the process to
    /// tell an applied call from one that never arrived.
    async fn finish(&self, session: &mut Session, job: &Job) -> End {
        let give_up = Instant::now() + FINISH_FOR;
        let errors = vec![FAIL_MESSAGE.to_owned()];
        let output = json!("ok");
        let mut lost_once = false;
        loop {
            if lost_once {
                // Did the lost call commit? The process says.
                match session.client.query_opt(&session.state, &[&job.id]).await {
                    Ok(Some(row)) => {
                        let state: i32 = row.get(0);
                        let executor: Option<String> = row.get(1);
                        let errors: Option<Vec<String>> = row.get(2);
                        let mine = executor.as_deref() == Some(self.name.as_str());
                        // FAILED by this executor's fail, not by the reaper at its deadline
                        // (which keeps the executor's name and sets its own errors).
                        let our_fail = errors.is_some_and(|e| e.iter().any(|m| m == FAIL_MESSAGE));
                        match (state, mine) {
                            (2, true) if !job.fail => return End::Closed,
                            (3, true) if job.fail && our_fail => return End::Failed,
                            (1, true) => {}
                            _ => return End::Refused,
                        }
                    }
                    Ok(None) => return End::Refused,
                    Err(e) => {
                        if Instant::now() >= give_up {
                            return End::Unknown;
                        }
                        if session_lost(&e) || session.client.is_closed() {
                            *session = self.session().await;
                        }
                        continue;
                    }
                }
            }
            let result = if job.fail {
                session
                    .client
                    .execute(&session.fail, &[&job.id, &self.name, &errors, &COLONY])
                    .await
            } else {
                session
                    .client
                    .execute(&session.close, &[&job.id, &self.name, &output, &COLONY])
                    .await
            };
            match result {
                Ok(_) if job.fail => return End::Failed,
                Ok(_) => return End::Closed,
                Err(e) if session_lost(&e) || session.client.is_closed() => {
                    if Instant::now() >= give_up {
                        return End::Unknown;
                    }
                    lost_once = true;
                    *session = self.session().await;
                }
                // 55000 (not running), 42501 (not this executor's), P0002: an answer.
                Err(e)
                    if matches!(
                        e.code().map(SqlState::code),
                        Some("55000" | "42501" | "P0002")
                    ) =>
                {
                    return End::Refused;
                }
                Err(_) if Instant::now() >= give_up => return End::Unknown,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}
