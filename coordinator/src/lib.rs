//! colony-coordinator: a stateless HTTP front for colony_assign. Any number of replicas may run
//! against one database; none is a leader. See DESIGN.md and docs/coordinator.md.

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
use crate::error::{Error, Result};
use crate::notifier::{ControlEvents, Notifier};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs the coordinator until `shutdown` is cancelled; then answers parked long-polls (204),
/// finishes in-flight requests, and closes the pool.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    // Every parked long-poll is an open socket: lift the soft file limit to the hard one.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let metrics = metrics::install();
    let config = Arc::new(config);
    let db = Db::new(&config)?;
    let tokens = Arc::new(TokenCache::new(config.token_cache()));
    // Subscribed before the notifier starts, so no removal can pass the token cache by.
    let mut control = ControlEvents::default();
    tokens.follow(&mut control);
    let (notifier, notifier_task) =
        Notifier::start(config.clone(), db.clone(), control, shutdown.clone());
    let reaper_task = tokio::spawn(reaper::run(config.clone(), db.clone(), shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Internal(format!("cannot listen on {}: {e}", config.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    // A plain line on stdout for scripts and tests that start us on port 0.
    println!("colony-coordinator listening on {address}");
    tracing::info!(%address, replica = %config.replica_name(), "listening");

    let state = http::AppState {
        config,
        db: db.clone(),
        notifier,
        tokens,
        metrics,
        shutdown: shutdown.clone(),
    };
    let header_read_timeout = state.config.header_read_timeout();
    http::serve(
        listener,
        http::app(state),
        header_read_timeout,
        shutdown.clone(),
    )
    .await;
    let _ = notifier_task.await;
    let _ = reaper_task.await;
    db.close();
    tracing::info!("stopped");
    Ok(())
}
