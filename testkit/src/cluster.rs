//! Clusters of a test's own: initdb into /tmp, started as `postgres`, removed when dropped.

use crate::pg::{connect_with, conninfo};
use tokio_postgres::Config;

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
    /// initdb and start a cluster preloading the extension, on a free port, with
    /// `CREATE EXTENSION colony_assign` in its `postgres` database.
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

    /// `pg_ctl stop -m fast`, waiting for it.
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

    /// Starts the stopped cluster again, with the same settings.
    pub fn start_again(&self) {
        self.pg_ctl("start");
    }

    /// Connection settings of the cluster's `postgres` database.
    pub fn config(&self) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        config
    }

    /// key=value connection string for processes we start (coordinators).
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
