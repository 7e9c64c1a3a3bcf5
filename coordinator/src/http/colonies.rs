//! Colonies: their counts (executor or admin tokens), and adding, listing, removing and
//! controlling them (admin tokens).

use super::AppState;
use super::extract::{AsAdmin, Authed, int_param, path_text, query, text_param, typed_body};
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
        .routes(routes!(colony_stats))
        .routes(routes!(add_colony, list_colonies))
        .routes(routes!(remove_colony))
        .routes(routes!(pause_colony))
        .routes(routes!(resume_colony))
        .routes(routes!(set_strict))
        .routes(routes!(colony_queues))
}

/// A colony's counts: executors, and processes per state.
#[utoipa::path(get, path = "/v1/colonies/{colony}/stats", tag = "processes",
    params(("colony" = String, Path)),
    responses(
        (status = 200, description = "The counts.", body = api::Stats),
        (status = 404, description = "A colony that does not exist or the token does not reach.", body = ErrorBody),
    ))]
async fn colony_stats(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<api::Stats>> {
    let colony = path_text(path)?;
    authed.in_colony(&colony)?;
    Ok(Json(state.db.stats(&colony).await?))
}

/// Add a colony (admin tokens; a token scoped to some colonies may add only those it names).
#[utoipa::path(post, path = "/v1/colonies", tag = "admin",
    request_body(content = api::NewColony, content_type = "application/json"),
    responses(
        (status = 201, description = "Added.", body = api::NewColony),
        (status = 400, description = "Malformed JSON, a missing or unknown key, a bad name (22023/22004).", body = ErrorBody),
        (status = 403, description = "An executor token, or a scoped admin token that does not name the colony.", body = ErrorBody),
        (status = 409, description = "The colony exists (23505).", body = ErrorBody),
    ))]
async fn add_colony(
    State(state): State<AppState>,
    admin: AsAdmin,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<api::NewColony>)> {
    let new: api::NewColony = typed_body(body, state.config.max_body_bytes)?;
    state.db.add_colony(admin.token(), &new.name).await?;
    Ok((StatusCode::CREATED, Json(new)))
}

/// List the colonies the token reaches, by name (admin tokens).
#[utoipa::path(get, path = "/v1/colonies", tag = "admin",
    params(
        ("after" = Option<String>, Query, description = "The `next` of the previous page."),
        ("limit" = Option<i32>, Query, description = "Page size, 1..=1000 (default 100)."),
    ),
    responses(
        (status = 200, description = "One page.", body = api::ColonyPage),
        (status = 400, description = "A bad or unknown parameter.", body = ErrorBody),
        (status = 403, description = "An executor token.", body = ErrorBody),
    ))]
async fn list_colonies(
    State(state): State<AppState>,
    admin: AsAdmin,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<api::ColonyPage>> {
    let params = query(params, &["after", "limit"])?;
    let after = text_param(&params, "after")?;
    let limit = int_param(&params, "limit", 1..=1000, Some(100))?.unwrap_or(100);
    Ok(Json(
        state
            .db
            .list_colonies(admin.admin.colonies.as_deref(), after.as_deref(), limit)
            .await?,
    ))
}

/// Remove a colony with its executors and processes (admin tokens). Its executors' tokens stop
/// working on every replica and their parked long-polls answer 401.
#[utoipa::path(delete, path = "/v1/colonies/{colony}", tag = "admin",
    params(("colony" = String, Path)),
    responses(
        (status = 204, description = "Removed."),
        (status = 403, description = "An executor token.", body = ErrorBody),
        (status = 404, description = "A colony that does not exist or the token does not reach.", body = ErrorBody),
    ))]
async fn remove_colony(
    State(state): State<AppState>,
    admin: AsAdmin,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    let colony = path_text(path)?;
    admin.in_colony(&colony)?;
    state.db.remove_colony(admin.token(), &colony).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pause assignment in a colony (admin tokens): long-polls get nothing until it is resumed.
#[utoipa::path(post, path = "/v1/colonies/{colony}/pause", tag = "admin",
    params(("colony" = String, Path)),
    responses(
        (status = 204, description = "Paused (or already paused)."),
        (status = 403, description = "An executor token.", body = ErrorBody),
        (status = 404, description = "A colony that does not exist or the token does not reach.", body = ErrorBody),
    ))]
async fn pause_colony(
    State(state): State<AppState>,
    admin: AsAdmin,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    let colony = path_text(path)?;
    admin.in_colony(&colony)?;
    state.db.pause(admin.token(), &colony).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resume assignment (admin tokens): every key with waiting work is notified, so executors
/// parked on every replica wake.
#[utoipa::path(post, path = "/v1/colonies/{colony}/resume", tag = "admin",
    params(("colony" = String, Path)),
    responses(
        (status = 204, description = "Resumed (or was not paused)."),
        (status = 403, description = "An executor token.", body = ErrorBody),
        (status = 404, description = "A colony that does not exist or the token does not reach.", body = ErrorBody),
    ))]
async fn resume_colony(
    State(state): State<AppState>,
    admin: AsAdmin,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    let colony = path_text(path)?;
    admin.in_colony(&colony)?;
    state.db.resume(admin.token(), &colony).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Switch a colony between strict (exact priority order) and distributed assignment (admin
/// tokens).
#[utoipa::path(put, path = "/v1/colonies/{colony}/strict", tag = "admin",
    params(("colony" = String, Path)),
    request_body(content = api::Strictness, content_type = "application/json"),
    responses(
        (status = 204, description = "Set."),
        (status = 400, description = "Malformed JSON, strict missing or not a boolean, an unknown key.", body = ErrorBody),
        (status = 403, description = "An executor token.", body = ErrorBody),
        (status = 404, description = "A colony that does not exist or the token does not reach.", body = ErrorBody),
    ))]
async fn set_strict(
    State(state): State<AppState>,
    admin: AsAdmin,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode> {
    let colony = path_text(path)?;
    admin.in_colony(&colony)?;
    let body: api::Strictness = typed_body(body, state.config.max_body_bytes)?;
    state
        .db
        .set_strict(admin.token(), &colony, body.strict)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A colony's backlog per (executor type, location): processes assignable now, and how long
/// the oldest has waited (admin tokens).
#[utoipa::path(get, path = "/v1/colonies/{colony}/queues", tag = "admin",
    params(("colony" = String, Path)),
    responses(
        (status = 200, description = "The queues with waiting work.", body = api::Queues),
        (status = 403, description = "An executor token.", body = ErrorBody),
        (status = 404, description = "A colony that does not exist or the token does not reach.", body = ErrorBody),
    ))]
async fn colony_queues(
    State(state): State<AppState>,
    admin: AsAdmin,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<api::Queues>> {
    let colony = path_text(path)?;
    admin.in_colony(&colony)?;
    Ok(Json(api::Queues {
        queues: state.db.queues(&colony).await?,
    }))
}
