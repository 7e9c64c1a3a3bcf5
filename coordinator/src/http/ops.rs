//! Operations endpoints (no authentication): health and Prometheus metrics.

use super::AppState;
use crate::metrics as m;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
}

/// 200 when the database answers and the LISTEN connection is up; 503 (with which part is
/// down) otherwise.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
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
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ok" } else { "degraded" },
            "database": if database { "ok" } else { "unreachable" },
            "listener": if listener { "connected" } else { "disconnected" },
            "replica": state.config.replica_name(),
        })),
    )
}

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
