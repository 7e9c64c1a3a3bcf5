//! Submitters: over HTTP (colony-client, one Idempotency-Key per batch, retried until
//! acknowledged) and over SQL (`submit_many` with the same kind of key; workflows with
//! `submit_workflow`, which has no key: after a lost session the runner looks for the
//! workflow's first label before submitting it again). The batches go out at a steady rate
//! over the submit phase, whatever the faults do.

use crate::cluster::{DATABASE, Postgres};
use crate::plan::{Batch, COLONY, label};
use colony_client::{Client, Error as ClientError};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio_postgres::{Config, NoTls};

/// Batches still to submit, paced, and what has been acknowledged.
pub struct Submissions {
    queue: Mutex<Queue>,
    started: Instant,
    /// Processes per second.
    rate: f64,
    seed: u64,
    /// Sequence numbers of acknowledged processes.
    pub acked: Mutex<Vec<u64>>,
    /// Submit calls that failed and were sent again.
    pub retried: Mutex<u64>,
    /// Submits refused by a 4xx or an SQL error that is an answer (none should be).
    pub refused: Mutex<Vec<String>>,
}

struct Queue {
    batches: VecDeque<Batch>,
    /// Workflows an HTTP submitter took; SQL submitters send them.
    workflows: VecDeque<(Batch, Instant)>,
    /// Processes taken so far (for pacing).
    taken: usize,
}

impl Submissions {
    pub fn new(batches: Vec<Batch>, total: usize, over: Duration, seed: u64) -> Submissions {
        Submissions {
            queue: Mutex::new(Queue {
                batches: batches.into(),
                workflows: VecDeque::new(),
                taken: 0,
            }),
            started: Instant::now(),
            rate: total as f64 / over.as_secs_f64().max(1.0),
            seed,
            acked: Mutex::default(),
            retried: Mutex::new(0),
            refused: Mutex::default(),
        }
    }

    /// The next batch and when it is due; None when all are taken. `sql` submitters also take
    /// workflows.
    fn next(&self, sql: bool) -> Option<(Batch, Instant)> {
        let mut q = self.queue.lock().unwrap();
        if sql && let Some(w) = q.workflows.pop_front() {
            return Some(w);
        }
        loop {
            let batch = q.batches.pop_front()?;
            let due = self.started + Duration::from_secs_f64(q.taken as f64 / self.rate);
            q.taken += batch.processes().len();
            match batch {
                Batch::Workflow(_) if !sql => q.workflows.push_back((batch, due)),
                batch => return Some((batch, due)),
            }
        }
    }

    /// Whether every batch has been taken (workflows included).
    fn drained(&self) -> bool {
        let q = self.queue.lock().unwrap();
        q.batches.is_empty() && q.workflows.is_empty()
    }

    fn key(&self, batch: &Batch) -> String {
        format!("chaos-{}-{}", self.seed, batch.processes()[0].seq)
    }

    fn acknowledge(&self, batch: &Batch) {
        self.acked
            .lock()
            .unwrap()
            .extend(batch.processes().iter().map(|p| p.seq));
    }

    fn retried(&self) {
        *self.retried.lock().unwrap() += 1;
    }
}

fn specs(batch: &Batch) -> Vec<Value> {
    batch.processes().iter().map(|p| p.spec.clone()).collect()
}

/// An HTTP submitter: runs until every batch is taken.
pub async fn http(subs: &Submissions, client: Client) {
    while let Some((batch, due)) = subs.next(false) {
        tokio::time::sleep_until(due.into()).await;
        let key = subs.key(&batch);
        let specs = specs(&batch);
        loop {
            match client.submit_many_with_key(COLONY, &specs, &key).await {
                Ok(_) => {
                    subs.acknowledge(&batch);
                    break;
                }
                Err(ClientError::Api {
                    status, message, ..
                }) if status < 500 => {
                    subs.refused
                        .lock()
                        .unwrap()
                        .push(format!("HTTP submit {key}: {status} {message}"));
                    break;
                }
                // Unavailable (the client's whole retry budget) or a 5xx: the same key again.
                Err(_) => {
                    subs.retried();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// A SQL submitter: runs until every batch (and workflow) is taken.
pub async fn sql(subs: &Submissions, pg: &Postgres, token: &str) {
    let config = pg.config(DATABASE, "chaos_submitter");
    let mut session = connect(&config, token).await;
    loop {
        let Some((batch, due)) = subs.next(true) else {
            if subs.drained() {
                return;
            }
            // An HTTP submitter may still hand over a workflow.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::time::sleep_until(due.into()).await;
        let specs = Value::Array(specs(&batch));
        let key = subs.key(&batch);
        let mut lost = false;
        loop {
            let result = match &batch {
                Batch::Specs(_) => session
                    .query(
                        "SELECT colony_assign.submit_many($1, $2, $3)",
                        &[&COLONY, &specs, &key],
                    )
                    .await
                    .map(drop),
                Batch::Workflow(_) => {
                    if lost && workflow_exists(pg, &batch).await {
                        Ok(())
                    } else {
                        session
                            .query_one(
                                "SELECT colony_assign.submit_workflow($1, $2)",
                                &[&COLONY, &specs],
                            )
                            .await
                            .map(drop)
                    }
                }
            };
            match result {
                Ok(()) => {
                    subs.acknowledge(&batch);
                    break;
                }
                Err(e) if e.code().is_none() || session.is_closed() || retriable(&e) => {
                    subs.retried();
                    lost = true;
                    if session.is_closed() || e.code().is_none() {
                        session = connect(&config, token).await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(e) => {
                    subs.refused
                        .lock()
                        .unwrap()
                        .push(format!("SQL submit {key}: {}", describe(&e)));
                    break;
                }
            }
        }
    }
}

/// An error that is the session's or the server's state, not an answer about the specs.
fn retriable(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| matches!(&c.code()[..2], "08" | "57" | "40" | "53" | "55"))
}

/// Whether a workflow whose submit lost its answer was committed: its first node's label
/// exists. (Its session is gone, so no late commit can follow.)
async fn workflow_exists(pg: &Postgres, batch: &Batch) -> bool {
    let admin = pg.admin().await;
    let first = label(batch.processes()[0].seq);
    admin
        .query_one(
            "SELECT count(*) FROM colony_assign.processes WHERE label = $1",
            &[&first],
        )
        .await
        .is_ok_and(|r| r.get::<_, i64>(0) > 0)
}

/// The SQLSTATE and message of a database error.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// A session logged in with the submitter's token (reconnecting until there is one).
async fn connect(config: &Config, token: &str) -> tokio_postgres::Client {
    let mut backoff = Duration::from_millis(50);
    loop {
        if let Ok((client, connection)) = config.connect(NoTls).await {
            tokio::spawn(connection);
            if client
                .query("SELECT 1 FROM colony_assign.login($1)", &[&token])
                .await
                .is_ok()
            {
                return client;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
