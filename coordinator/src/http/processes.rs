//! Submitting, listing, inspecting, finishing and cancelling processes.

use super::AppState;
use super::extract::{
    AsAdmin, AsExecutor, Authed, int_param, json_body, only_keys, path_id, path_text, query,
    text_param, typed_body,
};
use crate::api::{self, ErrorBody};
use crate::db::ProcessFilter;
use crate::error::{Error, Result};
use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The header that makes a submit idempotent (the name clients send; matched case-insensitively).
const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_processes, list_processes))
        .routes(routes!(close_many))
        .routes(routes!(get_process))
        .routes(routes!(close_process))
        .routes(routes!(fail_process))
        .routes(routes!(append_log, get_logs))
        .routes(routes!(cancel_process))
}

/// Submit one spec (object) or many (array, one transaction).
///
/// With an `Idempotency-Key` header, a retry of the same submit returns the first call's ids
/// and creates nothing (the key is checked and recorded by the extension, in the submit's own
/// transaction; the same key with another body is 400). Any executor token of the colony may
/// submit, and any admin token that reaches it.
#[utoipa::path(post, path = "/v1/colonies/{colony}/processes", tag = "processes",
    params(
        ("colony" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII bytes; a retry with the same key and body returns the first call's ids."),
    ),
    request_body(content = Value, description = "A spec (ColonyOS FunctionSpec keys) or an array of specs.", content_type = "application/json"),
    responses(
        (status = 201, description = "The ids, in input order.", body = api::Submitted),
        (status = 400, description = "Malformed JSON, an invalid spec (22023), a key reused with another body.", body = ErrorBody),
        (status = 404, description = "A colony the token does not reach.", body = ErrorBody),
        (status = 413, description = "A body over --max-body-bytes, a spec over 256 KiB (54000).", body = ErrorBody),
    ))]
async fn submit_processes(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<api::Submitted>)> {
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
    Ok((StatusCode::CREATED, Json(api::Submitted { ids })))
}

/// The query parameters of the process listing.
const LIST_PARAMS: &[&str] = &[
    "state",
    "executortype",
    "location",
    "executor",
    "workflow",
    "since",
    "until",
    "order",
    "after",
    "limit",
];

/// A state by name (`waiting`, `running`, `success`, `failed`, `cancelled`, any case) or number.
fn state_param(text: &str) -> Result<i32> {
    const NAMES: [&str; 5] = ["waiting", "running", "success", "failed", "cancelled"];
    NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .map(|n| n as i32)
        .or_else(|| text.parse().ok().filter(|n| (0..=4).contains(n)))
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "state must be one of {} or 0..4, got {}",
                NAMES.join(", "),
                Value::from(text)
            ))
        })
}

/// List a colony's processes, newest first (admin tokens).
///
/// A keyset page: pass `next` back as `after`, with the same filters and order, for the next
/// one; `next` is null on the last page. Pages are stable while processes are submitted, and
/// cost the same however deep they are. A page examines at most 10,000 processes, so with a
/// filter that matches few of them it may hold fewer than `limit` (even none) and still have a
/// `next`. Processes are summaries: `GET /v1/processes/{id}` has spec, input, output and errors.
#[utoipa::path(get, path = "/v1/colonies/{colony}/processes", tag = "admin",
    params(
        ("colony" = String, Path),
        ("state" = Option<String>, Query, description = "waiting, running, success, failed, cancelled (or 0..4)."),
        ("executortype" = Option<String>, Query, description = "Only processes for this executor type."),
        ("location" = Option<String>, Query, description = "Only processes that require this location."),
        ("executor" = Option<String>, Query, description = "Only processes this executor runs or ran."),
        ("workflow" = Option<i64>, Query, description = "Only this workflow's processes."),
        ("since" = Option<String>, Query, description = "Only from this time on (RFC 3339, inclusive): submission time, or end time with order=ended."),
        ("until" = Option<String>, Query, description = "Only before this time (RFC 3339, exclusive)."),
        ("order" = Option<String>, Query, description = "`submitted` (default): newest submission first; `ended`: finished processes, most recently ended first."),
        ("after" = Option<String>, Query, description = "The `next` of the previous page."),
        ("limit" = Option<i32>, Query, description = "Page size, 1..=1000 (default 100)."),
    ),
    responses(
        (status = 200, description = "One page.", body = api::ProcessPage),
        (status = 400, description = "A bad or unknown parameter, a cursor of another order.", body = ErrorBody),
        (status = 403, description = "An executor token.", body = ErrorBody),
        (status = 404, description = "A colony that does not exist or the token does not reach.", body = ErrorBody),
    ))]
async fn list_processes(
    State(state): State<AppState>,
    admin: AsAdmin,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<api::ProcessPage>> {
    let colony = path_text(path)?;
    admin.in_colony(&colony)?;
    let params = query(params, LIST_PARAMS)?;
    let order = match params.get("order").map(String::as_str) {
        None | Some("submitted") => "submitted",
        Some("ended") => "ended",
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "order must be submitted or ended, got {}",
                Value::from(other)
            )));
        }
    };
    let filter = ProcessFilter {
        state: params.get("state").map(|s| state_param(s)).transpose()?,
        executor_type: text_param(&params, "executortype")?,
        location: text_param(&params, "location")?,
        executor: text_param(&params, "executor")?,
        workflow_id: int_param(&params, "workflow", 1..=i64::MAX, None)?,
        since: text_param(&params, "since")?,
        until: text_param(&params, "until")?,
        order: order.to_owned(),
        after: text_param(&params, "after")?,
        limit: int_param(&params, "limit", 1..=1000, Some(100))?.unwrap_or(100),
    };
    Ok(Json(state.db.list_processes(&colony, &filter).await?))
}

/// One process.
#[utoipa::path(get, path = "/v1/processes/{id}", tag = "processes",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The process.", body = api::Process),
        (status = 400, description = "An id that is not an integer.", body = ErrorBody),
        (status = 404, description = "No such process, or one in a colony the token does not reach.", body = ErrorBody),
    ))]
async fn get_process(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<api::Process>> {
    let id = path_id(path)?;
    let process = state.db.process(id).await?;
    authed.sees(&process.colony, &format!("process {id}"))?;
    Ok(Json(process))
}

/// Mark a RUNNING process SUCCESS with its output (only its executor).
#[utoipa::path(post, path = "/v1/processes/{id}/close", tag = "executors",
    params(("id" = i64, Path)),
    request_body(content = Option<api::CloseBody>, description = "Optional: `{\"output\": <any JSON>}`.", content_type = "application/json"),
    responses(
        (status = 204, description = "Closed."),
        (status = 400, description = "Malformed JSON, an unknown key, a bad id.", body = ErrorBody),
        (status = 403, description = "Another executor's process (42501), or an admin token.", body = ErrorBody),
        (status = 404, description = "No such process in the executor's colony.", body = ErrorBody),
        (status = 409, description = "Not running, e.g. closed twice (55000).", body = ErrorBody),
        (status = 413, description = "An output over 256 KiB.", body = ErrorBody),
    ))]
async fn close_process(
    State(state): State<AppState>,
    executor: AsExecutor,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode> {
    let id = path_id(path)?;
    let body = json_body(body, state.config.max_body_bytes)?;
    if let Some(body) = &body {
        only_keys(body, &["output"])?;
    }
    let output = body.as_ref().and_then(|b| b.get("output"));
    state.db.close_process(id, &executor.0, output).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Close many processes in one request (at most 1000); each item is reported.
#[utoipa::path(post, path = "/v1/processes/close", tag = "executors",
    request_body(content = Vec<api::CloseItem>, content_type = "application/json"),
    responses(
        (status = 200, description = "Per item: closed, or why not.", body = api::CloseResults),
        (status = 400, description = "Not an array of {id, output}.", body = ErrorBody),
        (status = 403, description = "An admin token.", body = ErrorBody),
        (status = 413, description = "Over 1000 items, or an output over 256 KiB.", body = ErrorBody),
    ))]
async fn close_many(
    State(state): State<AppState>,
    executor: AsExecutor,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<api::CloseResults>> {
    let closes = match json_body(body, state.config.max_body_bytes)? {
        Some(closes @ Value::Array(_)) => closes,
        _ => {
            return Err(Error::BadRequest(
                "the body must be an array of {\"id\": ..., \"output\": ...}".into(),
            ));
        }
    };
    let results = state.db.close_many(&executor.0, &closes).await?;
    Ok(Json(api::CloseResults { results }))
}

/// Mark a RUNNING process FAILED with errors (only its executor).
#[utoipa::path(post, path = "/v1/processes/{id}/fail", tag = "executors",
    params(("id" = i64, Path)),
    request_body(content = api::FailBody, content_type = "application/json"),
    responses(
        (status = 204, description = "Failed."),
        (status = 400, description = "Malformed JSON, errors not an array of strings, a bad id.", body = ErrorBody),
        (status = 403, description = "Another executor's process (42501), or an admin token.", body = ErrorBody),
        (status = 404, description = "No such process in the executor's colony.", body = ErrorBody),
        (status = 409, description = "Not running (55000).", body = ErrorBody),
    ))]
async fn fail_process(
    State(state): State<AppState>,
    executor: AsExecutor,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode> {
    let id = path_id(path)?;
    let body: api::FailBody = body_of(
        body,
        state.config.max_body_bytes,
        "the body must be {\"errors\": [\"...\"]}: errors must be an array of strings",
    )?;
    state.db.fail_process(id, &executor.0, &body.errors).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Append a line to a RUNNING process's log (only its executor).
#[utoipa::path(post, path = "/v1/processes/{id}/logs", tag = "executors",
    params(("id" = i64, Path)),
    request_body(content = api::LogBody, content_type = "application/json"),
    responses(
        (status = 204, description = "Logged."),
        (status = 400, description = "Malformed JSON, no message, a bad id.", body = ErrorBody),
        (status = 403, description = "Another executor's process, or an admin token.", body = ErrorBody),
        (status = 404, description = "No such process in the executor's colony.", body = ErrorBody),
        (status = 409, description = "Not running.", body = ErrorBody),
        (status = 413, description = "A message over 16 KiB.", body = ErrorBody),
    ))]
async fn append_log(
    State(state): State<AppState>,
    executor: AsExecutor,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode> {
    let id = path_id(path)?;
    let body: api::LogBody = body_of(
        body,
        state.config.max_body_bytes,
        "the body must be {\"message\": \"...\"}: message must be a string",
    )?;
    state.db.log(id, &executor.0, &body.message).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A process's log, oldest first.
#[utoipa::path(get, path = "/v1/processes/{id}/logs", tag = "processes",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The log lines.", body = [api::LogEntry]),
        (status = 400, description = "A bad id.", body = ErrorBody),
        (status = 404, description = "No such process, or one in a colony the token does not reach.", body = ErrorBody),
    ))]
async fn get_logs(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<api::LogEntry>>> {
    let id = path_id(path)?;
    let process = state.db.process(id).await?;
    authed.sees(&process.colony, &format!("process {id}"))?;
    Ok(Json(state.db.logs(id).await?))
}

/// Cancel a WAITING or RUNNING process (and its waiting workflow descendants).
///
/// Any executor token of the process's colony may (as it may submit there), and any admin
/// token that reaches the colony.
#[utoipa::path(post, path = "/v1/processes/{id}/cancel", tag = "processes",
    params(("id" = i64, Path)),
    responses(
        (status = 204, description = "Cancelled."),
        (status = 400, description = "A bad id.", body = ErrorBody),
        (status = 404, description = "No such process, or one in a colony the token does not reach.", body = ErrorBody),
        (status = 409, description = "It has already ended (55000).", body = ErrorBody),
    ))]
async fn cancel_process(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    let id = path_id(path)?;
    // A process never changes colony, so checking it before the cancel is as good as with it.
    let process = state.db.process(id).await?;
    authed.sees(&process.colony, &format!("process {id}"))?;
    state.db.cancel(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// [`typed_body`], with what the route expects added to the message of a 400.
fn body_of<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
    expected: &str,
) -> Result<T> {
    typed_body(body, limit).map_err(|e| match e {
        Error::BadRequest(why) => Error::BadRequest(format!("{why}; {expected}")),
        other => other,
    })
}
