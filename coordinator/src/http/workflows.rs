//! Workflows (DAGs).

use super::AppState;
use super::extract::{Authed, json_body, path_id, path_text};
use crate::api::{self, ErrorBody};
use crate::error::{Error, Result};
use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_workflow))
        .routes(routes!(get_workflow))
}

/// Submit a workflow: an array of specs with `nodename` and `conditions.dependencies`.
#[utoipa::path(post, path = "/v1/colonies/{colony}/workflows", tag = "processes",
    params(("colony" = String, Path)),
    request_body(content = Vec<Value>, description = "Specs with nodename and conditions.dependencies.", content_type = "application/json"),
    responses(
        (status = 201, description = "The workflow's id.", body = api::WorkflowSubmitted),
        (status = 400, description = "Malformed JSON, an invalid spec or graph (22023).", body = ErrorBody),
        (status = 404, description = "A colony the token does not reach.", body = ErrorBody),
        (status = 413, description = "Too large (54000).", body = ErrorBody),
    ))]
async fn submit_workflow(
    State(state): State<AppState>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<api::WorkflowSubmitted>)> {
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
    let workflow_id = state.db.submit_workflow(&colony, &specs).await?;
    Ok((
        StatusCode::CREATED,
        Json(api::WorkflowSubmitted { workflow_id }),
    ))
}

/// A workflow's graph, as `colony_assign.workflow()` returns it: its state and every node
/// with process id, state and edges.
#[utoipa::path(get, path = "/v1/workflows/{id}", tag = "processes",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The graph.", body = Value),
        (status = 400, description = "An id that is not an integer.", body = ErrorBody),
        (status = 404, description = "No such workflow, or one in a colony the token does not reach.", body = ErrorBody),
    ))]
async fn get_workflow(
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
