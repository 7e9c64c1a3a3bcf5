//! The HTTP API (routes in DESIGN.md). Each module owns its routes; `app()` merges them.

mod assign;
mod body;
mod colonies;
mod error;
mod executors;
mod extract;
mod ops;
mod processes;
mod serve;
mod workflows;

pub use serve::serve;

use crate::auth::TokenCache;
use crate::config::Config;
use crate::db::Db;
use crate::notifier::Notifier;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub notifier: Notifier,
    pub tokens: Arc<TokenCache>,
    pub metrics: PrometheusHandle,
    /// Cancelled on SIGTERM/ctrl-c: long-polls answer 204 at once.
    pub shutdown: CancellationToken,
}

pub fn app(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let body_timeout = state.config.body_read_timeout();
    Router::new()
        .merge(assign::router())
        .merge(processes::router())
        .merge(colonies::router())
        .merge(workflows::router())
        .merge(executors::router())
        .merge(ops::router())
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_request(move |request: Request| async move {
            body::with_deadline(request, body_timeout)
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let route = request
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|p| p.as_str().to_owned());
                tracing::debug_span!("request", method = %request.method(), uri = %request.uri(), route)
            }),
        )
        .with_state(state)
}
