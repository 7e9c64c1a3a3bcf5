//! colony-coordinator: a stateless HTTP front for colony_assign. Any number of replicas may run
//! against one database; none is a leader. See DESIGN.md and docs/coordinator.md.

pub mod api;
pub mod auth;
pub mod batch;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod metrics;
pub mod notifier;
pub mod reaper;

use crate::auth::TokenCache;
use crate::config::Config;
use crate::db::Db;
use crate::error::StartupError;
use crate::notifier::{ControlEvents, Notifier};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Runs the coordinator until `shutdown` is cancelled; then answers parked long-polls (204),
/// finishes in-flight requests, and closes the pool. Fails before serving anything when the
/// configuration is unusable (a `--database-url` that does not parse, an address it cannot
/// listen on).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartupError> {
    // Checked before anything starts, so a typo is one clear line and a non-zero exit.
    db::pg_config(&config)?;
    // Every parked long-poll is an open socket: lift the soft file limit to the hard one.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartupError::Listen {
            address: config.listen,
            source,
        })?;
    let address = listener
        .local_addr()
        .map_err(|source| StartupError::Listen {
            address: config.listen,
            source,
        })?;
    let replica = start(Arc::new(config), metrics::install(), shutdown.clone())?;
    // A plain line on stdout for scripts and tests that start us on port 0.
    println!("colony-coordinator listening on {address}");
    tracing::info!(%address, replica = %replica.state.config.replica_name(), "listening");

    let header_read_timeout = replica.state.config.header_read_timeout();
    http::serve(
        listener,
        http::app(replica.state.clone()),
        header_read_timeout,
        shutdown,
    )
    .await;
    replica.stopped().await;
    tracing::info!("stopped");
    Ok(())
}

/// What a replica runs besides its HTTP server: the state the handlers share, and the
/// notifier and reaper tasks (which end when `shutdown` is cancelled).
pub struct Replica {
    pub state: http::AppState,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts a replica's pool, notifier and reaper. `metrics` renders `/metrics`: the global
/// recorder's handle in `run()`, a local recorder's in in-process tests.
pub fn start(
    config: Arc<Config>,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<Replica, StartupError> {
    let db = Db::new(&config)?;
    let tokens = Arc::new(TokenCache::new(config.token_cache()));
    // Subscribed before the notifier starts, so no removal can pass the token cache by.
    let mut control = ControlEvents::default();
    tokens.follow(&mut control);
    let (notifier, notifier_task) =
        Notifier::start(config.clone(), db.clone(), control, shutdown.clone());
    let reaper_task = tokio::spawn(reaper::run(config.clone(), db.clone(), shutdown.clone()));
    Ok(Replica {
        state: http::AppState {
            config,
            db,
            notifier,
            tokens,
            metrics,
            shutdown,
        },
        tasks: vec![notifier_task, reaper_task],
    })
}

impl Replica {
    /// Waits for the notifier and reaper to end (after shutdown) and closes the pool.
    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
        self.state.db.close();
    }
}
