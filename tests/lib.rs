//! Test harness: a fresh database with the extension per test, connections, a notification
//! listener, and a fingerprint of the extension's tables.
//!
//! The cluster comes from the environment (`PGHOST`, `PGPORT`, `PGUSER`); `.ci/run` and
//! `scripts/test` start a throwaway one and set them. A test never shares a database with
//! another, so tests run in parallel.

use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification};

/// How long any wait in a test may take before it counts as a failure. Generous because the
/// machine is shared; nothing ever waits this long when the code is right.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Connection settings of the test cluster, from the environment.
pub fn cluster_config() -> Config {
    let mut config = Config::new();
    config
        .host(std::env::var("PGHOST").as_deref().unwrap_or("127.0.0.1"))
        .port(
            std::env::var("PGPORT")
                .expect("PGPORT must name the test cluster's port (run the tests through .ci/run or scripts/test)")
                .parse()
                .expect("PGPORT must be a port number"),
        )
        .user(std::env::var("PGUSER").as_deref().unwrap_or("postgres"))
        .dbname("postgres");
    config
}

/// Connects with `config` and drives the connection on a task, forwarding notifications.
pub async fn connect_with(config: &Config) -> (Client, mpsc::UnboundedReceiver<Notification>) {
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .expect("connect to the test cluster");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n);
            }
        }
    });
    (client, rx)
}

/// A database of its own with `CREATE EXTENSION colony_assign`, named after the test.
pub struct TestDb {
    pub name: String,
    config: Config,
}

impl TestDb {
    /// A database whose background reaper is off, so tests that call reap() themselves see
    /// every overdue process. (The cluster preloads the extension, so its launcher would
    /// otherwise start a reaper here within 10 s.)
    pub async fn new(test: &str) -> TestDb {
        TestDb::create(test, 0).await
    }

    /// A database whose background reaper runs every `reap_interval_ms`.
    pub async fn with_reaper(test: &str, reap_interval_ms: u32) -> TestDb {
        TestDb::create(test, reap_interval_ms).await
    }

    async fn create(test: &str, reap_interval_ms: u32) -> TestDb {
        let name = format!("t_{test}");
        let (admin, _) = connect_with(&cluster_config()).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .expect("drop old test database");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        admin
            .batch_execute(&format!(
                "ALTER DATABASE \"{name}\" SET colony_assign.reap_interval = {reap_interval_ms}"
            ))
            .await
            .expect("set the test database's reap interval");
        let mut config = cluster_config();
        config.dbname(&name);
        let db = TestDb { name, config };
        db.client()
            .await
            .batch_execute("CREATE EXTENSION colony_assign")
            .await
            .expect("CREATE EXTENSION colony_assign (is it installed? see scripts/test)");
        db
    }

    pub fn config(&self) -> Config {
        self.config.clone()
    }

    /// A new superuser connection to the test database.
    pub async fn client(&self) -> Client {
        connect_with(&self.config).await.0
    }

    /// A new connection as `user` (trust authentication on the test cluster).
    pub async fn client_as(&self, user: &str) -> Client {
        let mut config = self.config.clone();
        config.user(user);
        connect_with(&config).await.0
    }

    /// A connection that LISTENs on `channels` plus a private marker channel.
    pub async fn listener(&self, channels: &[String]) -> Listener {
        let (client, rx) = connect_with(&self.config).await;
        let marker = format!("marker_{}", std::process::id());
        let mut sql = format!("LISTEN \"{marker}\";");
        for channel in channels {
            sql.push_str(&format!("LISTEN \"{channel}\";"));
        }
        client.batch_execute(&sql).await.expect("LISTEN");
        Listener {
            _client: client,
            rx,
            marker,
        }
    }
}

/// Notifications received by one LISTENing connection.
pub struct Listener {
    _client: Client,
    rx: mpsc::UnboundedReceiver<Notification>,
    marker: String,
}

impl Listener {
    /// Every notification delivered before a marker that `notifier` sends now. PostgreSQL
    /// delivers notifications in commit order, so this is exactly what was committed before
    /// this call, with no sleeping and no guessing how long to wait.
    pub async fn drain(&mut self, notifier: &Client) -> Vec<(String, String)> {
        notifier
            .execute("SELECT pg_notify($1, 'marker')", &[&self.marker])
            .await
            .expect("send marker");
        let mut received = Vec::new();
        loop {
            let n = tokio::time::timeout(DEADLINE, self.rx.recv())
                .await
                .expect("marker notification within the deadline")
                .expect("listener connection alive");
            if n.channel() == self.marker {
                return received;
            }
            received.push((n.channel().to_owned(), n.payload().to_owned()));
        }
    }
}

impl Listener {
    /// The next notification on any channel but the marker, within the deadline.
    pub async fn next(&mut self) -> Notification {
        loop {
            let n = tokio::time::timeout(DEADLINE, self.rx.recv())
                .await
                .expect("a notification within the deadline")
                .expect("listener connection alive");
            if n.channel() != self.marker {
                return n;
            }
        }
    }
}

/// A digest of everything in the extension's tables, to show a failed call changed nothing.
pub async fn fingerprint(client: &Client) -> String {
    client
        .query_one(
            "SELECT md5(coalesce((SELECT string_agg(c::text, '|' ORDER BY c.name) FROM colony_assign.colonies c), '')
                     || coalesce((SELECT string_agg(e::text, '|' ORDER BY e.colony, e.name) FROM colony_assign.executors e), '')
                     || coalesce((SELECT string_agg(p::text, '|' ORDER BY p.id) FROM colony_assign.processes p), ''))",
            &[],
        )
        .await
        .expect("fingerprint")
        .get(0)
}

/// The SQLSTATE of a failed call, panicking when it did not fail.
pub fn sqlstate<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>) -> String {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("expected a database error, got {e}"))
            .code()
            .to_owned(),
    }
}

/// A minimal valid spec for `executor_type`, with extra top-level or condition fields merged in.
pub fn spec(
    executor_type: &str,
    conditions: serde_json::Value,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut spec =
        serde_json::json!({"funcname": "work", "conditions": {"executortype": executor_type}});
    if let serde_json::Value::Object(c) = conditions {
        for (k, v) in c {
            spec["conditions"][k] = v;
        }
    }
    if let serde_json::Value::Object(e) = extra {
        for (k, v) in e {
            spec[k] = v;
        }
    }
    spec
}

impl TestDb {
    /// key=value connection string for processes we start (coordinators).
    pub fn conninfo(&self) -> String {
        conninfo(&self.config)
    }
}

fn conninfo(config: &Config) -> String {
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    format!(
        "host={host} port={} user={} dbname={}",
        config.get_ports()[0],
        config.get_user().unwrap_or("postgres"),
        config.get_dbname().unwrap_or("postgres")
    )
}

/// Polls `condition` until it holds, panicking with `what` at the deadline. For conditions
/// that are observed, not signalled (a metric reaching a value, a row reaching a state).
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The coordinator binary, built (or found up to date) once per test run.
fn coordinator_binary() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "coordinator",
                    "--bin",
                    "colony-coordinator",
                ])
                .status()
                .expect("run cargo build for the coordinator");
            assert!(status.success(), "building the coordinator failed");
            // target/<profile>/deps/e2e-<hash> -> target/<profile>/colony-coordinator
            let exe = std::env::current_exe().expect("test binary path");
            exe.parent()
                .and_then(|deps| deps.parent())
                .expect("target dir")
                .join("colony-coordinator")
        })
        .clone()
}

/// A real coordinator process, stopped when dropped. Its log goes to target/e2e-logs/.
pub struct Coordinator {
    child: tokio::process::Child,
    pub base: String,
    pub http: reqwest::Client,
}

impl Coordinator {
    pub async fn start(db: &TestDb, name: &str, args: &[&str]) -> Coordinator {
        Coordinator::start_with_conninfo(&db.conninfo(), name, args).await
    }

    pub async fn start_with_conninfo(conninfo: &str, name: &str, args: &[&str]) -> Coordinator {
        use tokio::io::AsyncBufReadExt;
        let log_dir = std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(|p| p.parent())
            .and_then(|p| p.parent())
            .unwrap()
            .join("e2e-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let log = std::fs::File::create(log_dir.join(format!("{name}.log"))).unwrap();
        let mut child = tokio::process::Command::new(coordinator_binary())
            .args([
                "--database-url",
                conninfo,
                "--listen",
                "127.0.0.1:0",
                "--replica",
                name,
            ])
            .args(args)
            .env("RUST_LOG", "coordinator=debug")
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start the coordinator");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("coordinator printed its address in time")
            .unwrap()
            .expect("coordinator printed its address");
        let address = line
            .strip_prefix("colony-coordinator listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        let coordinator = Coordinator {
            child,
            base: format!("http://{address}"),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        };
        let health = format!("{}/healthz", coordinator.base);
        let http = coordinator.http.clone();
        eventually("coordinator healthy", || {
            let (http, health) = (http.clone(), health.clone());
            async move { matches!(http.get(&health).send().await, Ok(r) if r.status() == 200) }
        })
        .await;
        coordinator
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sum of a metric's samples whose labels include all of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .unwrap();
        colony_proto::metrics_text::sum(&text, name, labels)
    }

    /// SIGTERM; returns how long the process took to exit.
    pub async fn terminate(&mut self) -> Duration {
        let pid = self.child.id().expect("running") as i32;
        let started = std::time::Instant::now();
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("coordinator exited in time")
            .unwrap();
        assert!(status.success(), "coordinator exit status {status}");
        started.elapsed()
    }
}

/// An executor's view of the HTTP API.
pub struct HttpExecutor {
    pub token: String,
    pub base: String,
    pub http: reqwest::Client,
}

impl HttpExecutor {
    pub fn new(coordinator: &Coordinator, token: &str) -> HttpExecutor {
        HttpExecutor {
            token: token.to_owned(),
            base: coordinator.base.clone(),
            http: reqwest::Client::new(),
        }
    }

    /// One long-poll: the processes handed out, or empty on 204.
    pub async fn assign(&self, colony: &str, timeout_s: u64, max: u32) -> Vec<serde_json::Value> {
        let response = self
            .http
            .post(format!(
                "{}/v1/colonies/{colony}/assign?timeout={timeout_s}&max={max}",
                self.base
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("long-poll request");
        match response.status().as_u16() {
            204 => Vec::new(),
            200 => response.json().await.expect("JSON array of processes"),
            other => panic!(
                "long-poll answered {other}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }

    pub async fn close(&self, id: i64, output: serde_json::Value) {
        let response = self
            .http
            .post(format!("{}/v1/processes/{id}/close", self.base))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "output": output }))
            .send()
            .await
            .expect("close request");
        assert_eq!(
            response.status(),
            204,
            "{}",
            response.text().await.unwrap_or_default()
        );
    }
}

/// A PostgreSQL cluster of a test's own, for tests that stop or restart the server (the
/// shared cluster serves every other test in parallel). Removed when dropped.
pub struct PrivateCluster {
    dir: std::path::PathBuf,
    pub port: u16,
}

const PGBIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(args: &[&str]) {
    let output = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .current_dir("/tmp")
        .output()
        .expect("run a PostgreSQL tool as postgres");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PrivateCluster {
    pub async fn start(name: &str) -> PrivateCluster {
        let dir =
            std::path::PathBuf::from(format!("/tmp/colony-private-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::process::Command::new("chown")
            .args(["postgres:postgres", dir.to_str().unwrap()])
            .status()
            .unwrap();
        let port = {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap().port()
        };
        let data = dir.join("data");
        as_postgres(&[
            &format!("{PGBIN}/initdb"),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        let cluster = PrivateCluster { dir, port };
        cluster.pg_ctl("start");
        let (client, _) = connect_with(&cluster.config()).await;
        client
            .batch_execute("CREATE EXTENSION colony_assign")
            .await
            .unwrap();
        cluster
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let log = self.dir.join("pg.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_preload_libraries=colony_assign",
            self.port,
            self.dir.display()
        );
        as_postgres(&[
            &format!("{PGBIN}/pg_ctl"),
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-m",
            "fast",
            "-o",
            &options,
            action,
        ]);
    }

    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    /// `pg_ctl stop -m fast` with a timeout; whether it finished in time.
    pub fn stop_fast_within(&self, seconds: u32) -> bool {
        let data = self.dir.join("data");
        std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{PGBIN}/pg_ctl"), "-D"])
            .arg(&data)
            .args(["-m", "fast", "-w", "-t", &seconds.to_string(), "stop"])
            .current_dir("/tmp")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn start_again(&self) {
        self.pg_ctl("start");
    }

    pub fn config(&self) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        config
    }

    pub fn conninfo(&self) -> String {
        conninfo(&self.config())
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = std::process::Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &format!("{PGBIN}/pg_ctl"),
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .current_dir("/tmp")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
