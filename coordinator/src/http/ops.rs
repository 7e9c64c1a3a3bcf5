//! Operations endpoints (no authentication): health and Prometheus metrics.

use super::AppState;
use crate::api;
use crate::metrics as m;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(prometheus))
}

/// Whether this replica can serve: 200 when the database answers and the LISTEN connection is
/// up; 503 (with which part is down) otherwise.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "Healthy.", body = api::Health),
        (status = 503, description = "The database or the LISTEN connection is down.", body = api::Health),
    ))]
async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<api::Health>) {
    let database = matches!(
        tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await,
        Ok(Ok(()))
    );
    let listener = state.notifier.connected();
    let status = if database && listener {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let health = api::Health {
        status: if status == StatusCode::OK {
            "ok"
        } else {
            "degraded"
        }
        .into(),
        database: if database { "ok" } else { "unreachable" }.into(),
        listener: if listener {
            "connected"
        } else {
            "disconnected"
        }
        .into(),
        replica: state.config.replica_name(),
    };
    (status, Json(health))
}

/// Prometheus metrics (text format; docs/coordinator.md lists them).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format.", body = String, content_type = "text/plain")))]
async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let snapshot = state.notifier.snapshot();
    for (kind, waiters) in &snapshot.waiters_by_kind {
        metrics::gauge!(m::PARKED, "kind" => *kind).set(*waiters as f64);
    }
    metrics::gauge!(m::LISTENING).set(snapshot.listening as f64);
    let mut text = state.metrics.render();
    m::render_parked_by_key(&mut text, &snapshot.waiters_by_key);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
