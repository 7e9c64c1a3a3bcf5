//! The OpenAPI 3.1 document: `GET /openapi.json`. Its paths come from the `#[utoipa::path]` of
//! each handler as `api()` registers them, its schemas from the `api` types those handlers take
//! and return; this module adds what every route shares (the bearer scheme, and the error
//! answers any `/v1` route can give).

use super::AppState;
use crate::api::ErrorBody;
use axum::Json;
use std::sync::OnceLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The name of the bearer security scheme in the document.
pub const BEARER: &str = "bearer";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "colony-coordinator",
        description = "HTTP front of colony_assign: executors long-poll for work and report it; \
                       submitters submit; admins manage colonies and executors and list what \
                       is in them. Authenticate with `Authorization: Bearer <token>`: an \
                       executor token (`colony_assign.add_executor`) or an admin token \
                       (`colony_assign.add_admin`). docs/coordinator.md has the details."
    ),
    tags(
        (name = "executors", description = "What an executor does: long-poll, close, fail, log, heartbeat (executor tokens)."),
        (name = "processes", description = "Submitting and inspecting processes and workflows (executor or admin tokens)."),
        (name = "admin", description = "Colonies, executors, colony control and listings (admin tokens)."),
        (name = "operations", description = "Health, metrics and this document (no token)."),
    )
)]
pub struct ApiDoc;

/// Adds the bearer scheme, and to every `/v1` operation the answers any of them can give. Run
/// on the merged document (a `modifiers(...)` of `ApiDoc` would run before the routes are in).
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .schemas
            .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for operation in operations(item) {
                operation.security =
                    Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                for (status, description) in [
                    ("401", "No, a malformed or an unknown bearer token."),
                    ("500", "Anything else (logged; the body says no more)."),
                    (
                        "503",
                        "The database is unreachable or the pool exhausted, or the replica is shutting down.",
                    ),
                ] {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_response(description));
                }
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// A response with the JSON error body.
pub fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        ErrorBody::name(),
                    ))))
                    .build(),
            )
            .build(),
    )
}

/// The document, built once from the routes.
pub fn document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = super::api().split_for_parts().1;
        Shared.modify(&mut document);
        document
    })
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json")))]
async fn openapi_json() -> Json<&'static OpenApi> {
    Json(document())
}
