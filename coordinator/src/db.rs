//! Database access: the small query pool and one function per extension call. The SQL lives in
//! `db/*.sql`; everything the coordinator does goes through colony_assign's functions (it has
//! no table privileges of its own).

use crate::batch::Batcher;
use crate::config::Config;
use crate::error::{Error, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use std::time::Duration;
use tokio_postgres::NoTls;

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
const CHANNELS: &str = include_str!("db/channels.sql");
const PING: &str = include_str!("db/ping.sql");
const SUBMIT_WORKFLOW: &str = include_str!("db/submit_workflow.sql");
const WORKFLOW: &str = include_str!("db/workflow.sql");
const HEARTBEAT: &str = include_str!("db/heartbeat.sql");
const LOG: &str = include_str!("db/log.sql");
const LOGS: &str = include_str!("db/logs.sql");
const REAP: &str = include_str!("db/reap.sql");
const WORKER_ACTIVE: &str = include_str!("db/worker_active.sql");

/// An executor as its bearer token identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executor {
    pub colony: String,
    pub name: String,
    pub executor_type: String,
    pub location: Option<String>,
}

/// Connection settings shared by the pool and the LISTEN connection.
pub fn pg_config(config: &Config) -> Result<tokio_postgres::Config> {
    let mut pg: tokio_postgres::Config = config
        .database_url
        .parse()
        .map_err(|e| Error::BadRequest(format!("invalid --database-url: {e}")))?;
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
    pub fn new(config: &Config) -> Result<Db> {
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
            .map_err(|e| Error::Internal(format!("building the pool: {e}")))?;
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
        Ok(rows.first().map(|r| Executor {
            colony: r.get(0),
            name: r.get(1),
            executor_type: r.get(2),
            location: r.get(3),
        }))
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
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
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
    ) -> Result<Vec<(i64, bool, Option<String>)>> {
        let rows = self
            .query(CLOSE_MANY, &[&executor.name, closes, &executor.colony])
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
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

    pub async fn process(&self, id: i64) -> Result<Value> {
        Ok(self.query(PROCESS, &[&id]).await?.remove(0).get(0))
    }

    pub async fn stats(&self, colony: &str) -> Result<Value> {
        Ok(self.query(STATS, &[&colony]).await?.remove(0).get(0))
    }

    /// Gives back processes whose long-poll answer could not be delivered (logged, never
    /// failing the caller: their deadlines would requeue them anyway).
    pub async fn release(&self, executor: Executor, ids: Vec<i64>) {
        give_back(self.pool.clone(), executor, ids).await
    }

    pub async fn channels(&self, executor: &Executor) -> Result<Vec<String>> {
        let rows = self
            .query(CHANNELS, &[&executor.colony, &executor.name])
            .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    pub async fn submit_workflow(&self, colony: &str, specs: &Value) -> Result<i64> {
        Ok(self
            .query(SUBMIT_WORKFLOW, &[&colony, specs])
            .await?
            .remove(0)
            .get(0))
    }

    pub async fn workflow(&self, id: i64) -> Result<Value> {
        Ok(self.query(WORKFLOW, &[&id]).await?.remove(0).get(0))
    }

    pub async fn heartbeat(&self, executor: &Executor) -> Result<()> {
        self.query(HEARTBEAT, &[&executor.colony, &executor.name])
            .await
            .map(drop)
    }

    pub async fn log(&self, id: i64, executor: &Executor, message: &str) -> Result<()> {
        self.query(LOG, &[&id, &executor.name, &message, &executor.colony])
            .await
            .map(drop)
    }

    pub async fn logs(&self, id: i64) -> Result<Value> {
        Ok(self.query(LOGS, &[&id]).await?.remove(0).get(0))
    }

    /// One reap() pass: (requeued, failed, stale executors, deleted, more to do).
    pub async fn reap(&self) -> Result<(i64, i64, i64, i64, bool)> {
        let row = self.query(REAP, &[]).await?.remove(0);
        Ok((row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
    }

    pub async fn worker_active(&self) -> Result<bool> {
        Ok(self.query(WORKER_ACTIVE, &[]).await?.remove(0).get(0))
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
        Ok(rows
            .iter()
            .map(|r| {
                let index: i32 = r.get(0);
                let waiting: i32 = r.get(1);
                ((index - 1) as usize, waiting as u64)
            })
            .collect())
    }
}

async fn query(
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
        .map_err(Error::from_db)
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
    let rows = query(&pool, ASSIGN_BATCH, &[&colonies, &names, &maxes]).await?;
    let mut out: Vec<Result<Vec<Value>>> = requests.iter().map(|_| Ok(Vec::new())).collect();
    for row in rows {
        let request: i32 = row.try_get(0).map_err(Error::from_db)?;
        let slot = out
            .get_mut((request - 1) as usize)
            .ok_or_else(|| Error::Internal(format!("assign_batch answered request {request}")))?;
        match row.try_get::<_, Option<Value>>(1).map_err(Error::from_db)? {
            Some(process) => {
                if let Ok(processes) = slot {
                    processes.push(process);
                }
            }
            None => *slot = Err(refused(row.get(2), row.get(3))),
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
    for row in rows {
        let request: i32 = row.try_get(0).map_err(Error::from_db)?;
        let sqlstate: Option<String> = row.try_get(1).map_err(Error::from_db)?;
        if sqlstate.is_some()
            && let Some(slot) = out.get_mut((request - 1) as usize)
        {
            *slot = Err(refused(sqlstate, row.get(2)));
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
    match result.map(|rows| rows.first().map_or(0, |r| r.get::<_, i64>(0))) {
        Ok(n) => {
            metrics::counter!(crate::metrics::RELEASED).increment(n as u64);
            tracing::info!(executor = %executor.name, colony = %executor.colony, released = n,
                "gave back processes whose long-poll response could not be delivered");
        }
        Err(e) => tracing::error!(error = %e, executor = %executor.name, ?ids,
            "could not give back undelivered processes; their deadlines will requeue them"),
    }
}
