//! The system under test: the PostgreSQL cluster scripts/chaos started (restarted here with
//! pg_ctl), the `chaos` database, and the coordinator replicas, each reaching PostgreSQL
//! through its own fault proxy.

use faultproxy::Proxy;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, Config, NoTls};

pub const DATABASE: &str = "chaos";

/// How long an executor may stay silent before `reap()` requeues its work (the colony's
/// `stale_after`): what brings back the work of a killed executor that has no deadline.
pub const STALE_AFTER_S: i64 = 15;

/// The database's reap interval (deadlines and stale executors are enforced this often).
pub const REAP_INTERVAL_MS: u32 = 250;

pub struct Postgres {
    pub port: u16,
    pub data: PathBuf,
    pub log: PathBuf,
    pub bin: PathBuf,
}

impl Postgres {
    pub fn config(&self, dbname: &str, user: &str) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .dbname(dbname)
            .application_name("chaos-runner")
            .connect_timeout(Duration::from_secs(2));
        config
    }

    /// A superuser connection to `dbname`, retried for up to a minute (PostgreSQL may be
    /// restarting).
    pub async fn admin_of(&self, dbname: &str) -> Client {
        let config = self.config(dbname, "postgres");
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            match config.connect(NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    return client;
                }
                Err(e) => {
                    assert!(
                        Instant::now() < give_up,
                        "cannot connect to PostgreSQL on port {}: {e}",
                        self.port
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    pub async fn admin(&self) -> Client {
        self.admin_of(DATABASE).await
    }

    /// A fresh `chaos` database with the extension, the colony, fast reaping, and roles for
    /// executors, submitters and coordinators; returns once its background worker runs.
    pub async fn setup(&self) {
        testkit::recreate_database(&self.config("postgres", "postgres"), DATABASE).await;
        self.admin_of("postgres")
            .await
            .batch_execute(&format!(
                "ALTER DATABASE {DATABASE} SET colony_assign.reap_interval = {REAP_INTERVAL_MS}"
            ))
            .await
            .expect("set the chaos database's reap interval");
        let admin = self.admin().await;
        admin
            .batch_execute("CREATE EXTENSION colony_assign")
            .await
            .expect("CREATE EXTENSION colony_assign (install it first: scripts/test does, or `cd pg_ext && cargo pgrx install`)");
        for (role, granted) in [
            ("chaos_executor", "colony_assign_executor"),
            ("chaos_submitter", "colony_assign_submitter"),
            ("chaos_coordinator", "colony_assign_coordinator"),
        ] {
            admin
                .batch_execute(&format!(
                    "DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
                     GRANT {granted} TO {role};"
                ))
                .await
                .expect("create a role");
        }
        admin
            .batch_execute(&format!(
                "SELECT colony_assign.add_colony('{}');
                 SELECT colony_assign.configure('{}', stale_after => interval '{STALE_AFTER_S} seconds');",
                crate::plan::COLONY,
                crate::plan::COLONY
            ))
            .await
            .expect("add and configure the colony");
        // The launcher starts the database's worker (relay, reaper) within about a second.
        testkit::eventually("the chaos database's colony_assign worker runs", || async {
            admin
                .query_one("SELECT colony_assign.worker_active()", &[])
                .await
                .expect("worker_active()")
                .get::<_, bool>(0)
        })
        .await;
    }

    /// `pg_ctl restart -m <mode>` (fast: clean shutdown; immediate: a crash, recovered from WAL
    /// at the start); how long PostgreSQL was gone.
    pub async fn restart(&self, mode: &str) -> Duration {
        let started = Instant::now();
        let output = tokio::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-m", mode, "-w", "-t", "120", "restart"])
            .current_dir("/tmp")
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run pg_ctl");
        assert!(
            output.status.success(),
            "pg_ctl restart -m {mode}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        started.elapsed()
    }

    /// Terminates the backends `condition` selects (SQL over pg_stat_activity); how many.
    pub async fn terminate(&self, condition: &str) -> i64 {
        let admin = self.admin_of("postgres").await;
        admin
            .query_one(
                &format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = '{DATABASE}' AND pid <> pg_backend_pid() AND ({condition})"
                ),
                &[],
            )
            .await
            .map_or(0, |r| r.get(0))
    }
}

/// A port that was free a moment ago (the replica binds it with SO_REUSEADDR).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A coordinator replica on a fixed port (so that clients find it again after a restart),
/// reaching PostgreSQL through `proxy`.
pub struct Replica {
    pub index: usize,
    pub port: u16,
    pub proxy: Proxy,
    binary: PathBuf,
    log: PathBuf,
    child: Option<tokio::process::Child>,
    http: reqwest::Client,
}

impl Replica {
    pub async fn new(index: usize, pg: &Postgres, binary: PathBuf, log: PathBuf) -> Replica {
        let proxy = Proxy::start(format!("127.0.0.1:{}", pg.port))
            .await
            .expect("start the replica's PostgreSQL proxy");
        Replica {
            index,
            port: free_port(),
            proxy,
            binary,
            log,
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self) -> colony_client::Url {
        colony_client::Url::parse(&format!("http://127.0.0.1:{}", self.port)).unwrap()
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process and waits (up to 30 s) until /healthz says 200.
    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the replica's log");
        let conninfo = format!(
            "host=127.0.0.1 port={} user=chaos_coordinator dbname={DATABASE}",
            self.proxy.port()
        );
        let child = tokio::process::Command::new(&self.binary)
            .args(["--database-url", &conninfo])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--replica", &format!("r{}", self.index)])
            .env("RUST_LOG", "coordinator=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start a coordinator replica");
        self.child = Some(child);
        let give_up = Instant::now() + Duration::from_secs(30);
        let health = format!("http://127.0.0.1:{}/healthz", self.port);
        while Instant::now() < give_up {
            if matches!(self.http.get(&health).send().await, Ok(r) if r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "chaos: replica r{} not healthy 30 s after its start",
            self.index
        );
    }

    /// SIGKILL.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                // SAFETY: signalling our own child process.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = child.wait().await;
        }
    }

    /// SIGTERM and wait.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                // SAFETY: signalling our own child process.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }
}
