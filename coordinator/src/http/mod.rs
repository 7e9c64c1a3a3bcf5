//! The HTTP API (routes in DESIGN.md and docs/coordinator.md). Each module owns its routes and
//! documents them where they are defined (`#[utoipa::path]`); `api()` merges them into one
//! router and one OpenAPI document, so the document served at `/openapi.json` is made from the
//! very routes the router serves.

mod assign;
mod body;
mod colonies;
mod error;
mod executors;
mod extract;
mod openapi;
mod ops;
mod processes;
mod serve;
mod ui;
mod workflows;

#[cfg(test)]
mod tests;

pub use openapi::document;
pub use serve::serve;

use crate::auth::TokenCache;
use crate::config::Config;
use crate::db::Db;
use crate::error::Error;
use crate::notifier::Notifier;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::Method;
use axum::http::Uri;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

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

/// Every route with its documentation. Needs no state, so the document can be built without a
/// running replica.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(assign::router())
        .merge(processes::router())
        .merge(colonies::router())
        .merge(workflows::router())
        .merge(executors::router())
        .merge(ops::router())
        .merge(openapi::router())
        .merge(ui::router())
}

pub fn app(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let body_timeout = state.config.body_read_timeout();
    let (router, _) = api().split_for_parts();
    router
        // Our JSON error shape for paths and methods no route serves, too (axum's are empty).
        .fallback(|method: Method, uri: Uri| async move {
            Error::NotFound(format!("no route for {method} {}", uri.path()))
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            Error::MethodNotAllowed(format!("{} does not take {method}", uri.path()))
        })
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
