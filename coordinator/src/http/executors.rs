//! Executor liveness.

use super::AppState;
use super::extract::Authed;
use crate::error::Result;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/executors/heartbeat", post(heartbeat))
}

/// Keeps the token's executor alive during a long process → 204.
async fn heartbeat(State(state): State<AppState>, authed: Authed) -> Result<StatusCode> {
    state.db.heartbeat(&authed.0).await?;
    Ok(StatusCode::NO_CONTENT)
}
