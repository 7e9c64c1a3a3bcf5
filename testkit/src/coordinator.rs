//! Coordinator replicas as real processes: started on a free port, healthy before they are
//! handed out, scraped over `/metrics`, stopped by SIGTERM.

use crate::database::TestDb;
use crate::{DEADLINE, eventually, metrics_text};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// How to start one coordinator process.
pub struct Launch<'a> {
    /// The colony-coordinator executable.
    pub binary: PathBuf,
    /// Its `--database-url`.
    pub conninfo: &'a str,
    /// Its `--replica` name.
    pub replica: &'a str,
    /// Further command-line arguments.
    pub args: &'a [&'a str],
    /// The file its log (stderr) goes to; None discards it.
    pub log: Option<PathBuf>,
    /// Its `RUST_LOG`.
    pub log_filter: &'a str,
    /// Further environment variables.
    pub env: Vec<(String, String)>,
}

impl<'a> Launch<'a> {
    /// What the e2e tests start: the workspace's coordinator (built by cargo on first use),
    /// logging at debug level to `target/e2e-logs/<replica>.log`.
    pub fn for_tests(conninfo: &'a str, replica: &'a str, args: &'a [&'a str]) -> Launch<'a> {
        let log_dir = target_dir().join("e2e-logs");
        std::fs::create_dir_all(&log_dir).expect("create target/e2e-logs");
        Launch {
            binary: coordinator_binary(),
            conninfo,
            replica,
            args,
            log: Some(log_dir.join(format!("{replica}.log"))),
            log_filter: "coordinator=debug",
            env: Vec::new(),
        }
    }

    /// Starts the process and waits until it answers `/healthz` with 200.
    pub async fn start(self) -> Coordinator {
        let stderr = match &self.log {
            Some(path) => std::fs::File::create(path)
                .unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
                .into(),
            None => Stdio::null(),
        };
        let mut child = tokio::process::Command::new(&self.binary)
            .args([
                "--database-url",
                self.conninfo,
                "--listen",
                "127.0.0.1:0",
                "--replica",
                self.replica,
            ])
            .args(self.args)
            .env("RUST_LOG", self.log_filter)
            .envs(self.env)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("coordinator printed its address in time")
            .expect("read the coordinator's stdout")
            .expect("coordinator printed its address");
        let address = line
            .strip_prefix("colony-coordinator listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        let coordinator = Coordinator {
            child,
            base: format!("http://{address}"),
            // No idle connections kept: a test that restarts or stops the server must not get
            // a pooled connection the server has closed.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("HTTP client"),
        };
        let health = coordinator.url("/healthz");
        let http = coordinator.http.clone();
        eventually(&format!("coordinator {} healthy", self.replica), || {
            let (http, health) = (http.clone(), health.clone());
            async move { matches!(http.get(&health).send().await, Ok(r) if r.status() == 200) }
        })
        .await;
        coordinator
    }
}

/// The profile directory of the running test or benchmark binary (`target/<profile>/`): the
/// binary lives there or in its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running binary");
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.file_name().is_some_and(|name| name != "deps"))
        .expect("the binary's profile directory")
        .to_path_buf()
}

/// `target/`.
fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .expect("target directory above the profile directory")
        .to_path_buf()
}

/// The workspace's coordinator binary, `target/<profile>/colony-coordinator`, built (or found
/// up to date) by cargo once per process.
fn coordinator_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
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
            profile_dir().join("colony-coordinator")
        })
        .clone()
}

/// A real coordinator process, killed when dropped.
pub struct Coordinator {
    child: tokio::process::Child,
    /// `http://<address>` it listens on.
    pub base: String,
    /// A client for scraping and probing it (keeps no idle connections).
    pub http: reqwest::Client,
}

impl Coordinator {
    /// A coordinator on `db`, started as the e2e tests start them ([`Launch::for_tests`]).
    pub async fn start(db: &TestDb, name: &str, args: &[&str]) -> Coordinator {
        Coordinator::start_with_conninfo(&db.conninfo(), name, args).await
    }

    /// A coordinator on the database `conninfo` names, started as the e2e tests start them.
    pub async fn start_with_conninfo(conninfo: &str, name: &str, args: &[&str]) -> Coordinator {
        Launch::for_tests(conninfo, name, args).start().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sum of a metric's samples whose labels include all of `labels`; panics when `/metrics`
    /// cannot be scraped.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.try_metric(name, labels)
            .await
            .unwrap_or_else(|| panic!("scrape {}", self.url("/metrics")))
    }

    /// [`Coordinator::metric`], or None when `/metrics` cannot be scraped.
    pub async fn try_metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let response = self.http.get(self.url("/metrics")).send().await.ok()?;
        let text = response.text().await.ok()?;
        Some(metrics_text::sum(&text, name, labels))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resident set size in KiB, from /proc (0 once it has exited).
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

    fn sigterm(&self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }

    /// SIGTERM; returns how long the process took to exit, which it must do cleanly (status
    /// 0) within the [`DEADLINE`].
    pub async fn terminate(&mut self) -> Duration {
        assert!(self.child.id().is_some(), "the coordinator is running");
        let started = Instant::now();
        self.sigterm();
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("coordinator exited in time")
            .expect("wait for the coordinator");
        assert!(status.success(), "coordinator exit status {status}");
        started.elapsed()
    }

    /// SIGTERM and wait up to 10 s for it to exit, whatever its status (killed when dropped
    /// if it has not).
    pub async fn stop(mut self) {
        self.sigterm();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
