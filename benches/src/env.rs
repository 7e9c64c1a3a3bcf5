//! The benchmark environment: fresh databases on the dev cluster, coordinator replicas as real
//! processes, executors over HTTP, and scenario sizes. The databases, processes, executors and
//! connections are the ones the e2e tests use (crate `testkit`); what is here is how the
//! benchmark runs them: its database names, the binary and log level it starts replicas with,
//! and executors that count a failure rather than panic.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::{Client, Config, Statement};

pub use testkit::{Poll, connect, connect_listening, ids};

/// How big each scenario runs: `full` for docs/BENCHMARKS.md, `smoke` for CI.
#[derive(Clone, Debug)]
pub struct Size {
    pub name: &'static str,
    pub seed_processes: usize,
    pub seed_replicas: Vec<usize>,
    pub floor_waiting: usize,
    pub measure: Duration,
    pub wake_count: usize,
    pub batch_processes: usize,
    /// Rounds (long-poll max=100 + batched close) each executor of the HTTP drain runs.
    pub drain_rounds: usize,
    pub scale_depths: Vec<usize>,
    pub scale_samples: usize,
    pub scale_e2e: usize,
    pub soak: [Duration; 3],
    pub peer_backlog: usize,
    /// Batches of 100 each client of the peer scenario's batched drain runs.
    pub peer_drain_batches: usize,
    pub parked: usize,
    /// Processes of the locality scenario's first phase (a tenth of that in its second).
    pub locality_processes: usize,
}

impl Size {
    pub fn full() -> Size {
        Size {
            name: "full",
            seed_processes: 10_000,
            seed_replicas: vec![1, 3, 5, 7, 9],
            floor_waiting: 200_000,
            measure: Duration::from_secs(15),
            wake_count: 1000,
            batch_processes: 10_000,
            drain_rounds: 100,
            scale_depths: vec![10_000, 100_000, 1_000_000],
            scale_samples: 2000,
            scale_e2e: 1_000_000,
            soak: [
                Duration::from_secs(20),
                Duration::from_secs(60),
                Duration::from_secs(20),
            ],
            peer_backlog: 200_000,
            peer_drain_batches: 150,
            parked: 10_000,
            locality_processes: 2000,
        }
    }
    pub fn smoke() -> Size {
        Size {
            name: "smoke",
            seed_processes: 300,
            seed_replicas: vec![1, 2],
            floor_waiting: 10_000,
            measure: Duration::from_secs(1),
            wake_count: 20,
            batch_processes: 200,
            drain_rounds: 2,
            scale_depths: vec![1_000, 3_000],
            scale_samples: 100,
            scale_e2e: 3_000,
            soak: [
                Duration::from_secs(2),
                Duration::from_secs(3),
                Duration::from_secs(2),
            ],
            peer_backlog: 10_000,
            peer_drain_batches: 2,
            parked: 200,
            locality_processes: 100,
        }
    }
}

pub struct Bench {
    /// key=value connection string of the cluster, without dbname.
    pub conninfo: String,
    pub coordinator: PathBuf,
    pub size: Size,
    pub out_dir: PathBuf,
}

pub struct Db {
    pub name: String,
    pub conninfo: String,
}

impl Bench {
    /// Connection settings of the cluster's `postgres` database.
    fn admin_config(&self) -> Config {
        format!("{} dbname=postgres", self.conninfo)
            .parse()
            .unwrap_or_else(|e| panic!("--conninfo {:?}: {e}", self.conninfo))
    }

    pub async fn admin(&self) -> Client {
        testkit::connect_with(&self.admin_config()).await.0
    }

    /// A fresh database `bench_<name>` with the extension and colony "bench".
    pub async fn fresh_db(&self, name: &str) -> Db {
        let name = format!("bench_{name}");
        let db = testkit::TestDb::create(&self.admin_config(), &name, None).await;
        let client = db.client().await;
        client
            .batch_execute("SELECT colony_assign.add_colony('bench')")
            .await
            .expect("add colony bench");
        // The launcher starts the new database's worker (NOTIFY relay, reaper) within 10 s;
        // measuring before it runs would measure a different system (every submitter NOTIFYing
        // itself). Without preload there is no worker to wait for.
        let preloaded: String = client
            .query_one("SHOW shared_preload_libraries", &[])
            .await
            .unwrap()
            .get(0);
        if preloaded.contains("colony_assign") {
            db.wait_for_worker().await;
        }
        Db {
            conninfo: format!("{} dbname={name}", self.conninfo),
            name,
        }
    }

    pub async fn drop_db(&self, db: &Db) {
        testkit::drop_database(&self.admin_config(), &db.name).await;
    }
}

impl Db {
    pub async fn client(&self) -> Client {
        connect(&self.conninfo).await
    }

    /// `n` executors named `<prefix><i>`; returns (name, token).
    pub async fn executors(
        &self,
        n: usize,
        prefix: &str,
        executor_type: &str,
        location: Option<&str>,
    ) -> Vec<(String, String)> {
        let client = self.client().await;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("{prefix}{i}");
            let token: String = client
                .query_one(
                    "SELECT colony_assign.add_executor('bench', $1, $2, $3)",
                    &[&name, &executor_type, &location],
                )
                .await
                .expect("add_executor")
                .get(0);
            out.push((name, token));
        }
        out
    }

    /// [`Db::executors`] for SQL-direct clients, which need only the names.
    pub async fn executor_names(&self, n: usize, prefix: &str, executor_type: &str) -> Vec<String> {
        let executors = self.executors(n, prefix, executor_type, None).await;
        executors.into_iter().map(|(name, _token)| name).collect()
    }

    /// Submits `n` copies of `spec` in batches of 10,000.
    pub async fn submit_copies(&self, spec: &Value, n: usize) {
        let client = self.client().await;
        let mut left = n;
        while left > 0 {
            let batch = left.min(10_000);
            let specs = Value::Array(vec![spec.clone(); batch]);
            client
                .query(
                    "SELECT 1 FROM colony_assign.submit_many('bench', $1)",
                    &[&specs],
                )
                .await
                .expect("submit_many");
            left -= batch;
        }
    }

    pub async fn vacuum(&self) {
        let _ = self
            .client()
            .await
            .batch_execute("VACUUM ANALYZE colony_assign.processes")
            .await;
    }
}

pub fn spec(executor_type: &str, location: Option<&str>) -> Value {
    let mut spec = json!({"funcname": "bench", "maxexectime": 300, "maxretries": 3,
                          "conditions": {"executortype": executor_type}});
    if let Some(l) = location {
        spec["conditions"]["locationname"] = json!(l);
    }
    spec
}

/// The two statements of a SQL-direct executor's cycle in colony `bench`, prepared once per
/// connection: `assign(executor)` returning ids, `close(id, executor)`.
pub struct SqlCycle {
    pub assign: Statement,
    pub close: Statement,
}

impl SqlCycle {
    pub async fn prepare(client: &Client) -> SqlCycle {
        let assign = client
            .prepare("SELECT id FROM colony_assign.assign('bench', $1)")
            .await
            .unwrap();
        let close = client
            .prepare("SELECT colony_assign.close($1, $2)")
            .await
            .unwrap();
        SqlCycle { assign, close }
    }
}

/// A coordinator replica, a real process: `stop` sends SIGTERM; dropped, it is killed.
pub struct Replica(testkit::Coordinator);

impl Replica {
    /// Replica `name` from `--coordinator` on `db`, logging warnings only (to nowhere);
    /// `BENCH_REPLICA_THREADS` sets its tokio worker threads.
    pub async fn start(bench: &Bench, db: &Db, name: &str, args: &[&str]) -> Replica {
        let launch = testkit::Launch {
            binary: bench.coordinator.clone(),
            conninfo: &db.conninfo,
            replica: name,
            args,
            log: None,
            log_filter: "coordinator=warn",
            env: std::env::var("BENCH_REPLICA_THREADS")
                .ok()
                .map(|n| ("TOKIO_WORKER_THREADS".to_owned(), n))
                .into_iter()
                .collect(),
        };
        Replica(launch.start().await)
    }

    /// The sum of a metric's samples (see `testkit::metrics_text`); 0 when the replica cannot be
    /// scraped.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0.try_metric(name, labels).await.unwrap_or(0.0)
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }
}

/// The replica's `base`, `pid()`, `rss_kib()`.
impl std::ops::Deref for Replica {
    type Target = testkit::Coordinator;
    fn deref(&self) -> &testkit::Coordinator {
        &self.0
    }
}

pub async fn total(replicas: &[Replica], name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for r in replicas {
        sum += r.metric(name, labels).await;
    }
    sum
}

/// An executor speaking HTTP to one replica in colony `bench`, on its own connection; a failed
/// call is counted by the caller, never a panic.
#[derive(Clone)]
pub struct HttpExecutor(testkit::HttpExecutor);

impl HttpExecutor {
    pub fn new(replica: &Replica, name: &str, token: &str) -> HttpExecutor {
        HttpExecutor(testkit::HttpExecutor::at(&replica.base, name, token))
    }

    pub async fn assign(&self, timeout_s: u64, max: u32) -> Poll {
        self.0.poll("bench", timeout_s, max).await
    }

    pub async fn close(&self, id: i64) -> bool {
        self.0.try_close(id).await
    }
}

/// The executor's `name`, `token`, `base` and `http` client.
impl std::ops::Deref for HttpExecutor {
    type Target = testkit::HttpExecutor;
    fn deref(&self) -> &testkit::HttpExecutor {
        &self.0
    }
}

/// A progress bar that ticks while a phase runs.
pub fn spinner(message: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("valid template"),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

pub fn counter(len: u64, message: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}] {msg}")
            .expect("valid template"),
    );
    bar.set_message(message);
    bar
}
