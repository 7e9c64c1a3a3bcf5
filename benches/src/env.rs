//! The benchmark environment: fresh databases on the dev cluster, coordinator replicas as real
//! processes, executors over HTTP, and scenario sizes.

use futures_util::StreamExt;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification, Statement};

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
    pub async fn admin(&self) -> Client {
        connect(&format!("{} dbname=postgres", self.conninfo)).await
    }

    /// A fresh database `bench_<name>` with the extension and colony "bench".
    pub async fn fresh_db(&self, name: &str) -> Db {
        let admin = self.admin().await;
        let db = format!("bench_{name}");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .expect("drop bench database");
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .expect("create bench database");
        let conninfo = format!("{} dbname={db}", self.conninfo);
        let client = connect(&conninfo).await;
        client
            .batch_execute(
                "CREATE EXTENSION colony_assign; SELECT colony_assign.add_colony('bench');",
            )
            .await
            .expect("CREATE EXTENSION colony_assign");
        // The launcher starts the new database's worker (NOTIFY relay, reaper) within 10 s;
        // measuring before it runs would measure a different system (every submitter NOTIFYing
        // itself). Without preload there is no worker to wait for.
        let preloaded: String = client
            .query_one("SHOW shared_preload_libraries", &[])
            .await
            .unwrap()
            .get(0);
        if preloaded.contains("colony_assign") {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let active: bool = client
                    .query_one("SELECT colony_assign.worker_active()", &[])
                    .await
                    .unwrap()
                    .get(0);
                if active {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the database's colony_assign worker did not start within 30 s"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        Db { name: db, conninfo }
    }

    pub async fn drop_db(&self, db: &Db) {
        let _ = self
            .admin()
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name))
            .await;
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

pub async fn connect(conninfo: &str) -> Client {
    connect_listening(conninfo).await.0
}

/// A connection whose notifications arrive on the receiver.
pub async fn connect_listening(conninfo: &str) -> (Client, mpsc::UnboundedReceiver<Notification>) {
    let (client, mut connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {conninfo}: {e}"));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send(n);
            }
        }
    });
    (client, rx)
}

/// A coordinator replica, a real process; stopped (SIGTERM) when dropped.
pub struct Replica {
    child: tokio::process::Child,
    pub base: String,
    http: reqwest::Client,
}

impl Replica {
    pub async fn start(bench: &Bench, db: &Db, name: &str, args: &[&str]) -> Replica {
        let mut child = tokio::process::Command::new(&bench.coordinator)
            .args([
                "--database-url",
                &db.conninfo,
                "--listen",
                "127.0.0.1:0",
                "--replica",
                name,
            ])
            .args(args)
            .env("RUST_LOG", "coordinator=warn")
            .envs(
                std::env::var("BENCH_REPLICA_THREADS")
                    .ok()
                    .map(|n| ("TOKIO_WORKER_THREADS", n)),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the coordinator");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("coordinator address line");
        let address = line.rsplit(' ').next().unwrap().to_owned();
        let replica = Replica {
            child,
            base: format!("http://{address}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = replica
                .http
                .get(format!("{}/healthz", replica.base))
                .send()
                .await
                && r.status() == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "coordinator {name} did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        replica
    }

    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let Ok(response) = self.http.get(format!("{}/metrics", self.base)).send().await else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        colony_proto::metrics_text::sum(&text, name, labels)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let Some(pid) = self.pid() else { return 0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

pub async fn total(replicas: &[Replica], name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for r in replicas {
        sum += r.metric(name, labels).await;
    }
    sum
}

/// An executor speaking HTTP to one replica, on its own connection.
#[derive(Clone)]
pub struct HttpExecutor {
    pub name: String,
    pub token: String,
    pub base: String,
    pub http: reqwest::Client,
}

pub enum Poll {
    Got(Vec<Value>),
    Empty,
    Failed,
}

impl HttpExecutor {
    pub fn new(replica: &Replica, name: &str, token: &str) -> HttpExecutor {
        HttpExecutor {
            name: name.into(),
            token: token.into(),
            base: replica.base.clone(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap(),
        }
    }

    pub async fn assign(&self, timeout_s: u64, max: u32) -> Poll {
        let response = self
            .http
            .post(format!(
                "{}/v1/colonies/bench/assign?timeout={timeout_s}&max={max}",
                self.base
            ))
            .bearer_auth(&self.token)
            .send()
            .await;
        match response {
            Err(_) => Poll::Failed,
            Ok(r) if r.status() == 204 => Poll::Empty,
            Ok(r) if r.status() == 200 => match r.json::<Vec<Value>>().await {
                Ok(v) => Poll::Got(v),
                Err(_) => Poll::Failed,
            },
            Ok(_) => Poll::Failed,
        }
    }

    pub async fn close(&self, id: i64) -> bool {
        matches!(
            self.http
                .post(format!("{}/v1/processes/{id}/close", self.base))
                .bearer_auth(&self.token)
                .body("{}")
                .send()
                .await,
            Ok(r) if r.status() == 204
        )
    }
}

pub fn ids(processes: &[Value]) -> Vec<i64> {
    processes.iter().filter_map(|p| p["id"].as_i64()).collect()
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
