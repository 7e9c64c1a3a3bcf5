//! Submitting, inspecting and finishing processes.

use super::AppState;
use super::extract::{Authed, json_body, only_keys, path_id, path_text};
use crate::error::{Error, Result};
use axum::Json;
use axum::Router;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

/// The header that makes a submit idempotent (the name clients send; matched case-insensitively).
const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/colonies/{colony}/processes", post(submit))
        .route("/v1/processes/close", post(close_many))
        .route("/v1/processes/{id}", get(process))
        .route("/v1/processes/{id}/close", post(close))
        .route("/v1/processes/{id}/fail", post(fail))
        .route("/v1/processes/{id}/logs", post(log).get(logs))
}

/// One spec (object) or many (array, one transaction) → 201 `{"ids": [...]}`.
///
/// With an `Idempotency-Key` header, a retry of the same submit returns the first call's ids
/// and creates nothing (the key is checked and recorded by the extension, in the submit's own
/// transaction; the same key with another body is 400).
async fn submit(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let colony = path_text(path)?;
    authed.in_colony(&colony)?;
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            Error::BadRequest("the Idempotency-Key header must be visible ASCII".into())
        })?),
    };
    let specs = match json_body(body, state.config.max_body_bytes)? {
        Some(spec @ Value::Object(_)) => Value::Array(vec![spec]),
        Some(specs @ Value::Array(_)) => specs,
        _ => {
            return Err(Error::BadRequest(
                "the body must be a spec (JSON object) or an array of specs".into(),
            ));
        }
    };
    let ids = state.db.submit(&colony, &specs, idempotency_key).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "ids": ids })).into_response(),
    )
        .into_response())
}

async fn process(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>> {
    let id = path_id(path)?;
    let process = state.db.process(id).await?;
    authed.sees(
        process["colony"].as_str().unwrap_or_default(),
        &format!("process {id}"),
    )?;
    Ok(Json(process))
}

/// Body (optional) `{"output": <any JSON>}` → 204.
async fn close(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode> {
    let id = path_id(path)?;
    let body = json_body(body, state.config.max_body_bytes)?;
    if let Some(body) = &body {
        only_keys(body, &["output"])?;
    }
    let output = body.as_ref().and_then(|b| b.get("output"));
    state.db.close_process(id, &authed.0, output).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body `[{"id": 1, "output": ...}, ...]` (at most 1000) → 200
/// `{"results": [{"id": 1, "closed": true}, {"id": 2, "closed": false, "error": "..."}]}`.
async fn close_many(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    let closes = match json_body(body, state.config.max_body_bytes)? {
        Some(closes @ Value::Array(_)) => closes,
        _ => {
            return Err(Error::BadRequest(
                "the body must be an array of {\"id\": ..., \"output\": ...}".into(),
            ));
        }
    };
    let results: Vec<Value> = state
        .db
        .close_many(&authed.0, &closes)
        .await?
        .into_iter()
        .map(|(id, closed, error)| match error {
            None => json!({"id": id, "closed": closed}),
            Some(error) => json!({"id": id, "closed": closed, "error": error}),
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

/// Body `{"errors": ["...", ...]}` → 204.
async fn fail(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode> {
    let id = path_id(path)?;
    let body = json_body(body, state.config.max_body_bytes)?
        .ok_or_else(|| Error::BadRequest("the body must be {\"errors\": [\"...\"]}".into()))?;
    only_keys(&body, &["errors"])?;
    let errors: Vec<String> = match body.get("errors") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|e| e.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::BadRequest("errors must be an array of strings".into()))?,
        _ => {
            return Err(Error::BadRequest(
                "errors must be an array of strings".into(),
            ));
        }
    };
    state.db.fail_process(id, &authed.0, &errors).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body `{"message": "..."}` → 204; only the process's executor, while it runs.
async fn log(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode> {
    let id = path_id(path)?;
    let body = json_body(body, state.config.max_body_bytes)?
        .ok_or_else(|| Error::BadRequest("the body must be {\"message\": \"...\"}".into()))?;
    only_keys(&body, &["message"])?;
    let message = body["message"]
        .as_str()
        .ok_or_else(|| Error::BadRequest("message must be a string".into()))?;
    state.db.log(id, &authed.0, message).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The process's log messages, oldest first.
async fn logs(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>> {
    let id = path_id(path)?;
    let process = state.db.process(id).await?;
    authed.sees(
        process["colony"].as_str().unwrap_or_default(),
        &format!("process {id}"),
    )?;
    Ok(Json(state.db.logs(id).await?))
}
