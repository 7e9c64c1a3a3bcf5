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
    pub async fn new(test: &str) -> TestDb {
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
