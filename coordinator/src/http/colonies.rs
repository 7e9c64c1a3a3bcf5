//! Colony inspection.

use super::AppState;
use super::extract::{Authed, path_text};
use crate::error::Result;
use axum::Json;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::Value;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/colonies/{colony}/stats", get(stats))
}

async fn stats(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>> {
    let colony = path_text(path)?;
    authed.in_colony(&colony)?;
    Ok(Json(state.db.stats(&colony).await?))
}
