//! Connections: the cluster from the environment, connecting with notifications forwarded to a
//! channel, and key=value connection strings for the processes we start.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::config::Host;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification};

/// Connection settings of the test cluster, from the environment (`PGHOST`, `PGPORT`,
/// `PGUSER`), database `postgres`. `.ci/run` and `scripts/test` start a throwaway cluster and
/// set them.
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

/// Connects with `config` and drives the connection on a task; its notifications go to the
/// receiver, which ends when the connection does.
pub async fn try_connect(
    config: &Config,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n);
            }
        }
    });
    Ok((client, rx))
}

/// [`try_connect`], panicking when the connection fails.
pub async fn connect_with(config: &Config) -> (Client, mpsc::UnboundedReceiver<Notification>) {
    try_connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", conninfo(config)))
}

/// A connection from a key=value connection string (as the benchmark takes it on its command
/// line), panicking when it fails.
pub async fn connect(conninfo: &str) -> Client {
    connect_listening(conninfo).await.0
}

/// [`connect`], with the connection's notifications on the receiver.
pub async fn connect_listening(conninfo: &str) -> (Client, mpsc::UnboundedReceiver<Notification>) {
    let config: Config = conninfo
        .parse()
        .unwrap_or_else(|e| panic!("connection string {conninfo:?}: {e}"));
    try_connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect to {conninfo}: {e}"))
}

/// The key=value connection string of `config`'s first host: host, port, user and database,
/// for processes we start (coordinators).
pub fn conninfo(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    format!(
        "host={host} port={} user={} dbname={}",
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_user().unwrap_or("postgres"),
        config.get_dbname().unwrap_or("postgres")
    )
}
