//! Throwaway databases with the extension, and a LISTENing connection that can tell exactly
//! what was notified before a point in time.

use crate::pg::{cluster_config, connect_with, conninfo};
use crate::{DEADLINE, eventually};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Config, Notification};

/// `name` as a quoted SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Drops database `name` of the cluster `admin` connects to (ending its sessions) if it
/// exists, and creates it empty.
pub async fn recreate_database(admin: &Config, name: &str) {
    let (client, _) = connect_with(admin).await;
    // Two statements: a multi-statement string runs as one transaction, which these refuse.
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quoted(name)
        ))
        .await
        .unwrap_or_else(|e| panic!("drop the old database {name}: {e}"));
    client
        .batch_execute(&format!("CREATE DATABASE {}", quoted(name)))
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
}

/// Drops database `name` of the cluster `admin` connects to, ending its sessions; best effort
/// (for cleaning up after a run).
pub async fn drop_database(admin: &Config, name: &str) {
    if let Ok((client, _)) = crate::pg::try_connect(admin).await {
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quoted(name)
            ))
            .await;
    }
}

/// A database of its own with `CREATE EXTENSION colony_assign`.
pub struct TestDb {
    pub name: String,
    config: Config,
}

impl TestDb {
    /// Database `t_<test>` on the test cluster, with its background reaper off, so tests that
    /// call reap() themselves see every overdue process. (The cluster preloads the extension,
    /// so its launcher would otherwise start a reaper there within 10 s.)
    pub async fn new(test: &str) -> TestDb {
        TestDb::create(&cluster_config(), &format!("t_{test}"), Some(0)).await
    }

    /// Database `t_<test>` on the test cluster, whose background reaper runs every
    /// `reap_interval_ms`.
    pub async fn with_reaper(test: &str, reap_interval_ms: u32) -> TestDb {
        TestDb::create(
            &cluster_config(),
            &format!("t_{test}"),
            Some(reap_interval_ms),
        )
        .await
    }

    /// Database `name` on the cluster `admin` connects to, created afresh (an older one of that
    /// name is dropped), with the extension. `reap_interval_ms` sets the database's
    /// `colony_assign.reap_interval` (0 = no background reaper); None keeps the cluster's.
    pub async fn create(admin: &Config, name: &str, reap_interval_ms: Option<u32>) -> TestDb {
        recreate_database(admin, name).await;
        if let Some(ms) = reap_interval_ms {
            let (client, _) = connect_with(admin).await;
            client
                .batch_execute(&format!(
                    "ALTER DATABASE {} SET colony_assign.reap_interval = {ms}",
                    quoted(name)
                ))
                .await
                .expect("set the database's reap interval");
        }
        let mut config = admin.clone();
        config.dbname(name);
        let db = TestDb {
            name: name.to_owned(),
            config,
        };
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

    /// key=value connection string for processes we start (coordinators).
    pub fn conninfo(&self) -> String {
        conninfo(&self.config)
    }

    /// A new connection to the database, as the cluster's user.
    pub async fn client(&self) -> Client {
        connect_with(&self.config).await.0
    }

    /// A new connection as `user` (trust authentication on the test cluster).
    pub async fn client_as(&self, user: &str) -> Client {
        let mut config = self.config.clone();
        config.user(user);
        connect_with(&config).await.0
    }

    /// Waits until the database's background worker (relay and reaper) runs: the launcher
    /// starts it within about a second of CREATE EXTENSION when the cluster preloads the
    /// extension and the database's reap interval is not 0.
    pub async fn wait_for_worker(&self) {
        let client = self.client().await;
        eventually("the database's colony_assign worker runs", || async {
            client
                .query_one("SELECT colony_assign.worker_active()", &[])
                .await
                .expect("worker_active()")
                .get::<_, bool>(0)
        })
        .await;
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
            let n = self.recv().await;
            if n.channel() == self.marker {
                return received;
            }
            received.push((n.channel().to_owned(), n.payload().to_owned()));
        }
    }

    /// The next notification on any channel but the marker, within the deadline.
    pub async fn next(&mut self) -> Notification {
        loop {
            let n = self.recv().await;
            if n.channel() != self.marker {
                return n;
            }
        }
    }

    async fn recv(&mut self) -> Notification {
        tokio::time::timeout(DEADLINE, self.rx.recv())
            .await
            .expect("a notification within the deadline")
            .expect("listener connection alive")
    }
}
