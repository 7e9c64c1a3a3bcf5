//! Database access: the small query pool and one function per extension call. The SQL lives in
//! `db/*.sql`; everything the coordinator does goes through colony_assign's functions (it has
//! no table privileges of its own).

use crate::api;
use crate::auth::Admin;
use crate::batch::Batcher;
use crate::config::Config;
use crate::error::{Error, Result, StartupError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

const ASSIGN_BATCH: &str = include_str!("db/assign_batch.sql");
const AUTHENTICATE: &str = include_str!("db/authenticate.sql");
const SUBMIT: &str = include_str!("db/submit.sql");
const CLOSE_BATCH: &str = include_str!("db/close_batch.sql");
const CLOSE_MANY: &str = include_str!("db/close_many.sql");
const FAIL: &str = include_str!("db/fail.sql");
const PROCESS: &str = include_str!("db/process.sql");
const STATS: &str = include_str!("db/stats.sql");
const RELEASE: &str = include_str!("db/release.sql");
const BACKLOG: &str = include_str!("db/backlog.sql");
const PING: &str = include_str!("db/ping.sql");
const SUBMIT_WORKFLOW: &str = include_str!("db/submit_workflow.sql");
const WORKFLOW: &str = include_str!("db/workflow.sql");
const HEARTBEAT: &str = include_str!("db/heartbeat.sql");
const LOG: &str = include_str!("db/log.sql");
const LOGS: &str = include_str!("db/logs.sql");
const REAP: &str = include_str!("db/reap.sql");
const WORKER_ACTIVE: &str = include_str!("db/worker_active.sql");
const AUTHENTICATE_ADMIN: &str = include_str!("db/authenticate_admin.sql");
const CANCEL: &str = include_str!("db/cancel.sql");
const ADMIN_ADD_COLONY: &str = include_str!("db/admin_add_colony.sql");
const ADMIN_REMOVE_COLONY: &str = include_str!("db/admin_remove_colony.sql");
const ADMIN_ADD_EXECUTOR: &str = include_str!("db/admin_add_executor.sql");
const ADMIN_REMOVE_EXECUTOR: &str = include_str!("db/admin_remove_executor.sql");
const ADMIN_PAUSE: &str = include_str!("db/admin_pause.sql");
const ADMIN_RESUME: &str = include_str!("db/admin_resume.sql");
const ADMIN_SET_STRICT: &str = include_str!("db/admin_set_strict.sql");
const LIST_COLONIES: &str = include_str!("db/list_colonies.sql");
const LIST_EXECUTORS: &str = include_str!("db/list_executors.sql");
const LIST_PROCESSES: &str = include_str!("db/list_processes.sql");
const QUEUES: &str = include_str!("db/queues.sql");

/// An executor as its bearer token identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executor {
    pub colony: String,
    pub name: String,
    pub executor_type: String,
    pub location: Option<String>,
}

/// What `list_processes` filters and where it starts (`None` = no filter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessFilter {
    pub state: Option<i32>,
    pub executor_type: Option<String>,
    pub location: Option<String>,
    pub executor: Option<String>,
    pub workflow_id: Option<i64>,
    /// RFC 3339 text; PostgreSQL parses it.
    pub since: Option<String>,
    pub until: Option<String>,
    /// `submitted` or `ended`.
    pub order: String,
    pub after: Option<String>,
    pub limit: i32,
}

/// Connection settings shared by the pool and the LISTEN connection. A string that does not
/// parse is a start-up error: `run()` calls this before anything else.
pub fn pg_config(config: &Config) -> Result<tokio_postgres::Config, StartupError> {
    let mut pg: tokio_postgres::Config = config
        .database_url
        .parse()
        .map_err(StartupError::DatabaseUrl)?;
    pg.application_name(format!("colony-coordinator {}", config.replica_name()))
        .connect_timeout(config.pool_timeout())
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10));
    Ok(pg)
}

/// One close request: (process id, executor, output).
type Close = (i64, Executor, Option<Value>);

#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// Long-polls that want work at the same moment share one `assign_batch` call.
    assigns: Batcher<(Executor, i32), Vec<Value>>,
    /// Concurrent close requests share one `close_batch` call.
    closes: Batcher<Close, ()>,
}

impl Db {
    pub fn new(config: &Config) -> Result<Db, StartupError> {
        let manager = Manager::from_config(
            pg_config(config)?,
            NoTls,
            ManagerConfig {
                // A broken connection is noticed by its failed query and dropped by the pool;
                // verifying each checkout would add a round trip to every assign.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.pool_timeout()))
            .create_timeout(Some(config.pool_timeout()))
            .recycle_timeout(Some(config.pool_timeout()))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StartupError::Pool(e.to_string()))?;
        let in_flight = usize::from(config.batch_in_flight);
        let max_batch = usize::from(config.batch_max);
        let assigns = {
            let (calls, gone) = (pool.clone(), pool.clone());
            Batcher::start(
                in_flight,
                max_batch,
                move |requests| assign_batch(calls.clone(), requests),
                move |(executor, _): (Executor, i32), processes: Vec<Value>| {
                    tokio::spawn(give_back(gone.clone(), executor, ids(&processes)));
                },
            )
        };
        let closes = {
            let calls = pool.clone();
            Batcher::start(
                in_flight,
                max_batch,
                move |requests| close_batch(calls.clone(), requests),
                |_, ()| {},
            )
        };
        Ok(Db {
            pool,
            assigns,
            closes,
        })
    }

    pub fn close(&self) {
        self.pool.close();
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        query(&self.pool, sql, params).await
    }

    pub async fn ping(&self) -> Result<()> {
        self.query(PING, &[]).await.map(drop)
    }

    /// Up to `max` processes for `executor`, as JSON objects, in queue order. Coalesced with
    /// other long-polls' assigns (batch.rs); if the caller is gone by the time they arrive,
    /// they are given back at once.
    pub async fn assign(&self, executor: &Executor, max: i32) -> Result<Vec<Value>> {
        self.assigns.call((executor.clone(), max)).await
    }

    pub async fn authenticate(&self, token: &str) -> Result<Option<Executor>> {
        let rows = self.query(AUTHENTICATE, &[&token]).await?;
        rows.first()
            .map(|r| {
                Ok(Executor {
                    colony: column(r, 0, "authenticate")?,
                    name: column(r, 1, "authenticate")?,
                    executor_type: column(r, 2, "authenticate")?,
                    location: column(r, 3, "authenticate")?,
                })
            })
            .transpose()
    }

    pub async fn authenticate_admin(&self, token: &str) -> Result<Option<Admin>> {
        let rows = self.query(AUTHENTICATE_ADMIN, &[&token]).await?;
        rows.first()
            .map(|r| {
                Ok(Admin {
                    name: column(r, 0, "authenticate_admin")?,
                    colonies: column(r, 1, "authenticate_admin")?,
                })
            })
            .transpose()
    }

    pub async fn submit(
        &self,
        colony: &str,
        specs: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Vec<i64>> {
        let rows = self
            .query(SUBMIT, &[&colony, specs, &idempotency_key])
            .await?;
        rows.iter().map(|r| column(r, 0, "submit_many")).collect()
    }

    /// Closes one process (coalesced with concurrent closes, batch.rs).
    pub async fn close_process(
        &self,
        id: i64,
        executor: &Executor,
        output: Option<&Value>,
    ) -> Result<()> {
        self.closes
            .call((id, executor.clone(), output.cloned()))
            .await
    }

    /// Per item: (process id, closed, why not).
    pub async fn close_many(
        &self,
        executor: &Executor,
        closes: &Value,
    ) -> Result<Vec<api::Closed>> {
        let rows = self
            .query(CLOSE_MANY, &[&executor.name, closes, &executor.colony])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(api::Closed {
                    id: column(r, 0, "close_many")?,
                    closed: column(r, 1, "close_many")?,
                    error: column(r, 2, "close_many")?,
                })
            })
            .collect()
    }

    pub async fn fail_process(
        &self,
        id: i64,
        executor: &Executor,
        errors: &[String],
    ) -> Result<()> {
        self.query(FAIL, &[&id, &executor.name, &errors, &executor.colony])
            .await
            .map(drop)
    }

    pub async fn process(&self, id: i64) -> Result<api::Process> {
        let rows = self.query(PROCESS, &[&id]).await?;
        decode_json(single(&rows, "process")?, 0, "process")
    }

    pub async fn stats(&self, colony: &str) -> Result<api::Stats> {
        let rows = self.query(STATS, &[&colony]).await?;
        decode_json(single(&rows, "stats")?, 0, "stats")
    }

    /// Gives back processes whose long-poll answer could not be delivered (logged, never
    /// failing the caller: their deadlines would requeue them anyway).
    pub async fn release(&self, executor: Executor, ids: Vec<i64>) {
        give_back(self.pool.clone(), executor, ids).await
    }

    pub async fn submit_workflow(&self, colony: &str, specs: &Value) -> Result<i64> {
        let rows = self.query(SUBMIT_WORKFLOW, &[&colony, specs]).await?;
        column(single(&rows, "submit_workflow")?, 0, "submit_workflow")
    }

    pub async fn workflow(&self, id: i64) -> Result<Value> {
        let rows = self.query(WORKFLOW, &[&id]).await?;
        column(single(&rows, "workflow")?, 0, "workflow")
    }

    /// Liveness, and the acknowledgement of the claim leases of `processes` (those RUNNING for
    /// the executor; none when empty).
    pub async fn heartbeat(&self, executor: &Executor, processes: &[i64]) -> Result<()> {
        self.query(HEARTBEAT, &[&executor.colony, &executor.name, &processes])
            .await
            .map(drop)
    }

    pub async fn log(&self, id: i64, executor: &Executor, message: &str) -> Result<()> {
        self.query(LOG, &[&id, &executor.name, &message, &executor.colony])
            .await
            .map(drop)
    }

    pub async fn logs(&self, id: i64) -> Result<Vec<api::LogEntry>> {
        let rows = self.query(LOGS, &[&id]).await?;
        decode_json(single(&rows, "logs")?, 0, "logs")
    }

    /// One reap() pass: (requeued, failed, stale executors, deleted, more to do).
    pub async fn reap(&self) -> Result<(i64, i64, i64, i64, bool)> {
        let rows = self.query(REAP, &[]).await?;
        let row = single(&rows, "reap")?;
        Ok((
            column(row, 0, "reap")?,
            column(row, 1, "reap")?,
            column(row, 2, "reap")?,
            column(row, 3, "reap")?,
            column(row, 4, "reap")?,
        ))
    }

    pub async fn worker_active(&self) -> Result<bool> {
        let rows = self.query(WORKER_ACTIVE, &[]).await?;
        column(single(&rows, "worker_active")?, 0, "worker_active")
    }

    /// Cancels a WAITING or RUNNING process (and its workflow descendants).
    pub async fn cancel(&self, id: i64) -> Result<()> {
        self.query(CANCEL, &[&id]).await.map(drop)
    }

    // What only admins may do: each call carries the admin's token, which the database checks
    // (with its colony scope) in the same transaction as the change.

    pub async fn add_colony(&self, admin_token: &str, name: &str) -> Result<()> {
        self.query(ADMIN_ADD_COLONY, &[&admin_token, &name])
            .await
            .map(drop)
    }

    pub async fn remove_colony(&self, admin_token: &str, name: &str) -> Result<()> {
        self.query(ADMIN_REMOVE_COLONY, &[&admin_token, &name])
            .await
            .map(drop)
    }

    /// The new executor's bearer token.
    pub async fn add_executor(
        &self,
        admin_token: &str,
        colony: &str,
        name: &str,
        executor_type: &str,
        location: Option<&str>,
    ) -> Result<String> {
        let rows = self
            .query(
                ADMIN_ADD_EXECUTOR,
                &[&admin_token, &colony, &name, &executor_type, &location],
            )
            .await?;
        column(single(&rows, "add_executor")?, 0, "add_executor")
    }

    pub async fn remove_executor(&self, admin_token: &str, colony: &str, name: &str) -> Result<()> {
        self.query(ADMIN_REMOVE_EXECUTOR, &[&admin_token, &colony, &name])
            .await
            .map(drop)
    }

    pub async fn pause(&self, admin_token: &str, colony: &str) -> Result<()> {
        self.query(ADMIN_PAUSE, &[&admin_token, &colony])
            .await
            .map(drop)
    }

    pub async fn resume(&self, admin_token: &str, colony: &str) -> Result<()> {
        self.query(ADMIN_RESUME, &[&admin_token, &colony])
            .await
            .map(drop)
    }

    pub async fn set_strict(&self, admin_token: &str, colony: &str, strict: bool) -> Result<()> {
        self.query(ADMIN_SET_STRICT, &[&admin_token, &colony, &strict])
            .await
            .map(drop)
    }

    /// A page of colonies by name; `within` (a scoped admin's list) limits it to those.
    pub async fn list_colonies(
        &self,
        within: Option<&[String]>,
        after: Option<&str>,
        limit: i32,
    ) -> Result<api::ColonyPage> {
        let rows = self
            .query(LIST_COLONIES, &[&within, &after, &limit])
            .await?;
        let (colonies, next) = page(&rows, "list_colonies")?;
        Ok(api::ColonyPage { colonies, next })
    }

    pub async fn list_executors(
        &self,
        colony: &str,
        after: Option<&str>,
        limit: i32,
    ) -> Result<api::ExecutorPage> {
        let rows = self
            .query(LIST_EXECUTORS, &[&colony, &after, &limit])
            .await?;
        let (executors, next) = page(&rows, "list_executors")?;
        Ok(api::ExecutorPage { executors, next })
    }

    pub async fn list_processes(
        &self,
        colony: &str,
        filter: &ProcessFilter,
    ) -> Result<api::ProcessPage> {
        let rows = self
            .query(
                LIST_PROCESSES,
                &[
                    &colony,
                    &filter.state,
                    &filter.executor_type,
                    &filter.location,
                    &filter.executor,
                    &filter.workflow_id,
                    &filter.since,
                    &filter.until,
                    &filter.order,
                    &filter.after,
                    &filter.limit,
                ],
            )
            .await?;
        let (processes, next) = page(&rows, "list_processes")?;
        Ok(api::ProcessPage { processes, next })
    }

    pub async fn queues(&self, colony: &str) -> Result<Vec<api::Queue>> {
        let rows = self.query(QUEUES, &[&colony]).await?;
        rows.iter()
            .map(|r| {
                Ok(api::Queue {
                    executor_type: column(r, 0, "queues")?,
                    location: column(r, 1, "queues")?,
                    waiting: column(r, 2, "queues")?,
                    oldest_submitted_at: column(r, 3, "queues")?,
                    oldest_age_s: column(r, 4, "queues")?,
                })
            })
            .collect()
    }

    /// (index into the arrays, assignable processes) for every key that has work.
    pub async fn backlog(
        &self,
        colonies: &[&str],
        executor_types: &[&str],
        locations: &[Option<&str>],
        executors: &[Option<&str>],
    ) -> Result<Vec<(usize, u64)>> {
        let rows = self
            .query(
                BACKLOG,
                &[&colonies, &executor_types, &locations, &executors],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let index: i32 = column(r, 0, "backlog")?;
                let waiting: i32 = column(r, 1, "backlog")?;
                Ok(((index - 1) as usize, waiting as u64))
            })
            .collect()
    }
}

/// Column `index` of a row of `what`. A value that does not decode (a type that changed under
/// us) is a 500 with the reason logged, never a panic in a handler.
fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize, what: &str) -> Result<T> {
    row.try_get(index)
        .map_err(|e| Error::Internal(format!("decoding column {index} of {what}: {e}")))
}

/// The one row a call returns.
fn single<'a>(rows: &'a [Row], what: &str) -> Result<&'a Row> {
    rows.first()
        .ok_or_else(|| Error::Internal(format!("{what} returned no row")))
}

/// A JSON column decoded into the API type it is documented as.
fn decode_json<T: DeserializeOwned>(row: &Row, index: usize, what: &str) -> Result<T> {
    let value: Value = column(row, index, what)?;
    serde_json::from_value(value)
        .map_err(|e| Error::Internal(format!("decoding the JSON of {what}: {e}")))
}

/// A listing's page: `(items jsonb, next text)`.
fn page<T: DeserializeOwned>(rows: &[Row], what: &str) -> Result<(Vec<T>, Option<String>)> {
    let row = single(rows, what)?;
    Ok((decode_json(row, 0, what)?, column(row, 1, what)?))
}

/// Longest a pool query may take. Past it the request fails with 503 and the connection is
/// discarded (closed, not returned to the pool): a link that died without closing (no FIN, no
/// RST) would otherwise hold the request, and the connection, until TCP gives up. Generous:
/// the longest legitimate calls (a large submit, an admin removal) take well under a second.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(10);

async fn query(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>> {
    metrics::counter!(crate::metrics::DB_QUERIES).increment(1);
    let client = pool.get().await?;
    let answered = tokio::time::timeout(QUERY_DEADLINE, async {
        // A failed prepare changed nothing (503); a call that was sent may have (504).
        let statement = client.prepare_cached(sql).await.map_err(Error::from_db)?;
        client
            .query(&statement, params)
            .await
            .map_err(Error::from_call)
    })
    .await;
    match answered {
        Ok(rows) => rows,
        Err(_) => {
            // Out of the pool for good: dropping it closes the connection. The call may still
            // be applied (its bytes may be on their way): the outcome is unknown.
            drop(deadpool_postgres::Object::take(client));
            Err(Error::OutcomeUnknown(format!(
                "no answer from the database within {QUERY_DEADLINE:?}"
            )))
        }
    }
}

/// [`query`] without the deadline, for `assign_batch`: a claim must never be abandoned
/// half-way (it could commit after the connection was dropped, and nobody would give it
/// back). Its callers stop waiting instead (`http/assign.rs`), and whatever it claims for a
/// caller who left is given back when it arrives (`Batcher`'s undelivered).
async fn query_to_the_end(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>> {
    metrics::counter!(crate::metrics::DB_QUERIES).increment(1);
    let client = pool.get().await?;
    let statement = client.prepare_cached(sql).await.map_err(Error::from_db)?;
    client
        .query(&statement, params)
        .await
        .map_err(Error::from_call)
}

/// A request the extension refused: its SQLSTATE and message.
fn refused(sqlstate: Option<String>, message: Option<String>) -> Error {
    Error::Refused {
        sqlstate: sqlstate.unwrap_or_else(|| "XX000".into()),
        message: message.unwrap_or_default(),
    }
}

/// One `assign_batch` call: per request, its processes (JSON, queue order) or why not.
async fn assign_batch(
    pool: Pool,
    requests: Vec<(Executor, i32)>,
) -> Result<Vec<Result<Vec<Value>>>> {
    metrics::histogram!(crate::metrics::BATCH_SIZE, "call" => "assign")
        .record(requests.len() as f64);
    let colonies: Vec<&str> = requests.iter().map(|(e, _)| e.colony.as_str()).collect();
    let names: Vec<&str> = requests.iter().map(|(e, _)| e.name.as_str()).collect();
    let maxes: Vec<i32> = requests.iter().map(|(_, max)| *max).collect();
    let rows = query_to_the_end(&pool, ASSIGN_BATCH, &[&colonies, &names, &maxes]).await?;
    let mut out: Vec<Result<Vec<Value>>> = requests.iter().map(|_| Ok(Vec::new())).collect();
    for row in &rows {
        let request: i32 = column(row, 0, "assign_batch")?;
        let slot = out
            .get_mut((request - 1) as usize)
            .ok_or_else(|| Error::Internal(format!("assign_batch answered request {request}")))?;
        match column::<Option<Value>>(row, 1, "assign_batch")? {
            Some(process) => {
                if let Ok(processes) = slot {
                    processes.push(process);
                }
            }
            None => {
                *slot = Err(refused(
                    column(row, 2, "assign_batch")?,
                    column(row, 3, "assign_batch")?,
                ))
            }
        }
    }
    Ok(out)
}

/// One `close_batch` call: per request, closed or why not.
async fn close_batch(pool: Pool, requests: Vec<Close>) -> Result<Vec<Result<()>>> {
    metrics::histogram!(crate::metrics::BATCH_SIZE, "call" => "close")
        .record(requests.len() as f64);
    let ids: Vec<i64> = requests.iter().map(|(id, _, _)| *id).collect();
    let names: Vec<&str> = requests.iter().map(|(_, e, _)| e.name.as_str()).collect();
    let outputs: Vec<Option<&Value>> = requests.iter().map(|(_, _, o)| o.as_ref()).collect();
    let colonies: Vec<&str> = requests.iter().map(|(_, e, _)| e.colony.as_str()).collect();
    let rows = query(&pool, CLOSE_BATCH, &[&ids, &names, &outputs, &colonies]).await?;
    let mut out: Vec<Result<()>> = requests.iter().map(|_| Ok(())).collect();
    for row in &rows {
        let request: i32 = column(row, 0, "close_batch")?;
        let sqlstate: Option<String> = column(row, 1, "close_batch")?;
        if sqlstate.is_some()
            && let Some(slot) = out.get_mut((request - 1) as usize)
        {
            *slot = Err(refused(sqlstate, column(row, 2, "close_batch")?));
        }
    }
    Ok(out)
}

/// Process ids of assigned processes (JSON objects).
pub fn ids(processes: &[Value]) -> Vec<i64> {
    processes.iter().filter_map(|p| p["id"].as_i64()).collect()
}

/// Puts processes whose long-poll answer could not be delivered back to WAITING.
pub async fn give_back(pool: Pool, executor: Executor, ids: Vec<i64>) {
    if ids.is_empty() {
        return;
    }
    let result = query(&pool, RELEASE, &[&executor.colony, &executor.name, &ids]).await;
    let released = result.and_then(|rows| match rows.first() {
        Some(row) => column::<i64>(row, 0, "release"),
        None => Ok(0),
    });
    match released {
        Ok(n) => {
            metrics::counter!(crate::metrics::RELEASED).increment(n as u64);
            tracing::info!(executor = %executor.name, colony = %executor.colony, released = n,
                "gave back processes whose long-poll response could not be delivered");
        }
        Err(e) => tracing::error!(error = %e, executor = %executor.name, ?ids,
            "could not give back undelivered processes; their deadlines will requeue them"),
    }
}
