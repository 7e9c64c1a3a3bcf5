//! Executors: liveness (executor tokens), and registering, listing and removing them (admin
//! tokens).

use super::AppState;
use super::extract::{
    AsAdmin, AsExecutor, int_param, optional_typed_body, path_pair, path_text, query, text_param,
    typed_body,
};
use crate::api::{self, ErrorBody};
use crate::error::Result;
use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use std::collections::HashMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(heartbeat))
        .routes(routes!(add_executor, list_executors))
        .routes(routes!(remove_executor))
}

/// Keep the token's executor alive during a long process, and acknowledge the claim leases of
/// the processes it names (a bare heartbeat acknowledges none).
#[utoipa::path(post, path = "/v1/executors/heartbeat", tag = "executors",
    request_body(content = Option<api::HeartbeatBody>, description = "Optional: `{\"processes\": [id, ...]}`, the processes it holds; those RUNNING for it are acknowledged (their claim leases end), other ids are ignored. No body acknowledges nothing.", content_type = "application/json"),
    responses(
        (status = 204, description = "Noted."),
        (status = 400, description = "Malformed JSON, an unknown key, `processes` not an array of ids.", body = ErrorBody),
        (status = 403, description = "An admin token.", body = ErrorBody),
    ))]
async fn heartbeat(
    State(state): State<AppState>,
    executor: AsExecutor,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode> {
    let processes = optional_typed_body::<api::HeartbeatBody>(body, state.config.max_body_bytes)?
        .map(|held| held.processes)
        .unwrap_or_default();
    state.db.heartbeat(&executor.0, &processes).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Register an executor (admin tokens). The answer carries its bearer token, this once.
#[utoipa::path(post, path = "/v1/colonies/{colony}/executors", tag = "admin",
    params(("colony" = String, Path)),
    request_body(content = api::NewExecutor, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered; `token` is its bearer token.", body = api::CreatedExecutor),
        (status = 400, description = "Malformed JSON, a missing or unknown key, a bad name (22023/22004).", body = ErrorBody),
        (status = 403, description = "An executor token.", body = ErrorBody),
        (status = 404, description = "A colony that does not exist or the token does not reach.", body = ErrorBody),
        (status = 409, description = "The executor exists (23505).", body = ErrorBody),
    ))]
async fn add_executor(
    State(state): State<AppState>,
    admin: AsAdmin,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<api::CreatedExecutor>)> {
    let colony = path_text(path)?;
    admin.in_colony(&colony)?;
    let new: api::NewExecutor = typed_body(body, state.config.max_body_bytes)?;
    // "" means no location, as an empty conditions.locationname does (and add_executor says).
    let location = new.location.filter(|l| !l.is_empty());
    let token = state
        .db
        .add_executor(
            admin.token(),
            &colony,
            &new.name,
            &new.executortype,
            location.as_deref(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(api::CreatedExecutor {
            colony,
            name: new.name,
            executor_type: new.executortype,
            location,
            token,
        }),
    ))
}

/// List a colony's executors by name, with liveness (admin tokens).
#[utoipa::path(get, path = "/v1/colonies/{colony}/executors", tag = "admin",
    params(
        ("colony" = String, Path),
        ("after" = Option<String>, Query, description = "The `next` of the previous page."),
        ("limit" = Option<i32>, Query, description = "Page size, 1..=1000 (default 100)."),
    ),
    responses(
        (status = 200, description = "One page.", body = api::ExecutorPage),
        (status = 400, description = "A bad or unknown parameter.", body = ErrorBody),
        (status = 403, description = "An executor token.", body = ErrorBody),
        (status = 404, description = "A colony that does not exist or the token does not reach.", body = ErrorBody),
    ))]
async fn list_executors(
    State(state): State<AppState>,
    admin: AsAdmin,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<api::ExecutorPage>> {
    let colony = path_text(path)?;
    admin.in_colony(&colony)?;
    let params = query(params, &["after", "limit"])?;
    let after = text_param(&params, "after")?;
    let limit = int_param(&params, "limit", 1..=1000, Some(100))?.unwrap_or(100);
    Ok(Json(
        state
            .db
            .list_executors(&colony, after.as_deref(), limit)
            .await?,
    ))
}

/// Remove an executor (admin tokens): its running processes go back to WAITING at once, its
/// token stops working on every replica, and its parked long-polls answer 401.
#[utoipa::path(delete, path = "/v1/colonies/{colony}/executors/{name}", tag = "admin",
    params(("colony" = String, Path), ("name" = String, Path)),
    responses(
        (status = 204, description = "Removed."),
        (status = 403, description = "An executor token.", body = ErrorBody),
        (status = 404, description = "No such executor, or a colony the token does not reach.", body = ErrorBody),
    ))]
async fn remove_executor(
    State(state): State<AppState>,
    admin: AsAdmin,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode> {
    let (colony, name) = path_pair(path)?;
    admin.in_colony(&colony)?;
    state
        .db
        .remove_executor(admin.token(), &colony, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
