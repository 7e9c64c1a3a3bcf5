//! Database access: the small query pool and one function per extension call. The SQL lives in
//! `db/*.sql`; everything the coordinator does goes through colony_assign's functions (it has
//! no table privileges of its own).

use crate::config::Config;
use crate::error::{Error, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use std::time::Duration;
use tokio_postgres::NoTls;

const ASSIGN: &str = include_str!("db/assign.sql");
const AUTHENTICATE: &str = include_str!("db/authenticate.sql");
const SUBMIT: &str = include_str!("db/submit.sql");
const CLOSE: &str = include_str!("db/close.sql");
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

#[derive(Clone)]
pub struct Db {
    pool: Pool,
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
        Ok(Db { pool })
    }

    pub fn close(&self) {
        self.pool.close();
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        metrics::counter!(crate::metrics::DB_QUERIES).increment(1);
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(sql).await.map_err(Error::from_db)?;
        client
            .query(&statement, params)
            .await
            .map_err(Error::from_db)
    }

    pub async fn ping(&self) -> Result<()> {
        self.query(PING, &[]).await.map(drop)
    }

    /// Up to `max` processes for `executor`, as JSON objects, in queue order.
    pub async fn assign(&self, executor: &Executor, max: i32) -> Result<Vec<Value>> {
        let rows = self
            .query(ASSIGN, &[&executor.colony, &executor.name, &max])
            .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
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

    pub async fn submit(&self, colony: &str, specs: &Value) -> Result<Vec<i64>> {
        let rows = self.query(SUBMIT, &[&colony, specs]).await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    pub async fn close_process(
        &self,
        id: i64,
        executor: &Executor,
        output: Option<&Value>,
    ) -> Result<()> {
        self.query(CLOSE, &[&id, &executor.name, &output, &executor.colony])
            .await
            .map(drop)
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

    pub async fn release(&self, executor: &Executor, ids: &[i64]) -> Result<i64> {
        Ok(self
            .query(RELEASE, &[&executor.colony, &executor.name, &ids])
            .await?
            .remove(0)
            .get(0))
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
