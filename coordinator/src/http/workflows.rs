//! Workflows (DAGs).

use super::AppState;
use super::extract::{Authed, json_body, path_id, path_text};
use crate::error::{Error, Result};
use axum::Json;
use axum::Router;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/colonies/{colony}/workflows", post(submit))
        .route("/v1/workflows/{id}", get(workflow))
}

/// An array of specs with nodenames and dependencies → 201 `{"workflow_id": id}`.
async fn submit(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>)> {
    let colony = path_text(path)?;
    authed.in_colony(&colony)?;
    let specs = match json_body(body, state.config.max_body_bytes)? {
        Some(specs @ Value::Array(_)) => specs,
        _ => {
            return Err(Error::BadRequest(
                "the body must be a JSON array of specs".into(),
            ));
        }
    };
    let id = state.db.submit_workflow(&colony, &specs).await?;
    Ok((StatusCode::CREATED, Json(json!({ "workflow_id": id }))))
}

async fn workflow(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>> {
    let id = path_id(path)?;
    let workflow = state.db.workflow(id).await?;
    authed.sees(
        workflow["colony"].as_str().unwrap_or_default(),
        &format!("workflow {id}"),
    )?;
    Ok(Json(workflow))
}
