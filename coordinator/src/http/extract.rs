//! Request parsing whose failures become our JSON errors (axum's own rejections are plain
//! text): who the bearer token belongs to, path ids, query parameters and JSON bodies.

use super::AppState;
use crate::auth::{Admin, Principal};
use crate::db::Executor;
use crate::error::{Error, Result};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;

/// The longest bearer token looked up; tokens are 68 bytes, so anything far longer is refused
/// before it costs a hash and a query.
const MAX_TOKEN_BYTES: usize = 512;

/// The bearer token of a request, still unchecked.
fn bearer(parts: &Parts) -> Result<&str> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(Error::Unauthorized("missing Authorization: Bearer <token>"))?;
    // The scheme is case-insensitive (RFC 9110, section 11.1).
    header
        .to_str()
        .ok()
        .and_then(|h| h.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_BYTES)
        .ok_or(Error::Unauthorized(
            "malformed Authorization header; expected Bearer <token>",
        ))
}

/// Another colony (or an object in one) looks exactly like one that does not exist, so a token
/// learns nothing about colonies it does not reach.
fn unknown_colony(colony: &str) -> Error {
    Error::NotFound(format!("unknown colony {}", Value::from(colony)))
}

/// Whoever the bearer token belongs to: an executor, or an admin (reads, submits, cancel).
pub struct Authed(pub Principal);

impl FromRequestParts<AppState> for Authed {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = bearer(parts)?;
        Ok(Authed(state.tokens.authenticate(&state.db, token).await?))
    }
}

impl Authed {
    /// The token must reach `colony`: an executor its own, an admin those its token names.
    pub fn in_colony(&self, colony: &str) -> Result<()> {
        if self.0.reaches(colony) {
            Ok(())
        } else {
            Err(unknown_colony(colony))
        }
    }

    /// For an object found by id (`what`, e.g. "process 7"): one in a colony the token does not
    /// reach looks like one that does not exist.
    pub fn sees(&self, colony: &str, what: &str) -> Result<()> {
        if self.0.reaches(colony) {
            Ok(())
        } else {
            Err(Error::NotFound(format!("unknown {what}")))
        }
    }
}

/// An executor's token: the routes that act as an executor (assign, close, fail, log,
/// heartbeat). An admin token is refused with 403: an admin does not run processes.
pub struct AsExecutor(pub Executor);

impl FromRequestParts<AppState> for AsExecutor {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        match Authed::from_request_parts(parts, state).await?.0 {
            Principal::Executor(executor) => Ok(AsExecutor(executor)),
            Principal::Admin(_) => Err(Error::Forbidden(
                "this route acts as an executor; an admin token cannot".into(),
            )),
        }
    }
}

impl AsExecutor {
    /// Executors act only in their own colony; another looks like one that does not exist.
    pub fn in_colony(&self, colony: &str) -> Result<&Executor> {
        if self.0.colony == colony {
            Ok(&self.0)
        } else {
            Err(unknown_colony(colony))
        }
    }
}

/// An admin's token: the admin routes. An executor token is refused with 403.
pub struct AsAdmin {
    pub admin: Admin,
    /// Passed to the database with every admin call, which checks it again (sql/admin.sql).
    /// Never logged: this type has no Debug.
    token: String,
}

impl FromRequestParts<AppState> for AsAdmin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = bearer(parts)?;
        match state.tokens.authenticate(&state.db, token).await? {
            Principal::Admin(admin) => Ok(AsAdmin {
                admin,
                token: token.to_owned(),
            }),
            Principal::Executor(_) => Err(Error::Forbidden(
                "this route needs an admin token (colony_assign.add_admin)".into(),
            )),
        }
    }
}

impl AsAdmin {
    /// A colony outside a scoped token's list looks like one that does not exist.
    pub fn in_colony(&self, colony: &str) -> Result<()> {
        if self.admin.reaches(colony) {
            Ok(())
        } else {
            Err(unknown_colony(colony))
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

pub fn path_text(path: Result<Path<String>, PathRejection>) -> Result<String> {
    path.map(|Path(p)| p)
        .map_err(|e| Error::BadRequest(format!("bad path: {e}")))
}

/// Two path segments, e.g. `{colony}` and `{name}`.
pub fn path_pair(path: Result<Path<(String, String)>, PathRejection>) -> Result<(String, String)> {
    path.map(|Path(p)| p)
        .map_err(|e| Error::BadRequest(format!("bad path: {e}")))
}

pub fn path_id(path: Result<Path<String>, PathRejection>) -> Result<i64> {
    let text = path_text(path)?;
    text.parse().map_err(|_| {
        Error::BadRequest(format!(
            "process id must be an integer, got {}",
            Value::from(text)
        ))
    })
}

/// Query parameters, refusing any not in `allowed`.
pub fn query(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    allowed: &[&str],
) -> Result<HashMap<String, String>> {
    let Query(params) = query.map_err(|e| Error::BadRequest(format!("bad query string: {e}")))?;
    if let Some(unknown) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Error::BadRequest(format!(
            "unknown query parameter {} (allowed: {})",
            Value::from(unknown.as_str()),
            allowed.join(", ")
        )));
    }
    Ok(params)
}

/// An integer query parameter within `range`, or `default` when absent.
pub fn int_param<T>(
    params: &HashMap<String, String>,
    name: &str,
    range: std::ops::RangeInclusive<T>,
    default: Option<T>,
) -> Result<Option<T>>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match params.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse::<T>()
            .ok()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "{name} must be an integer between {} and {}, got {}",
                    range.start(),
                    range.end(),
                    Value::from(text.as_str())
                ))
            }),
    }
}

/// A text query parameter that, when given, is not empty.
pub fn text_param(params: &HashMap<String, String>, name: &str) -> Result<Option<String>> {
    match params.get(name) {
        Some(text) if text.is_empty() => Err(Error::BadRequest(format!(
            "{name} must not be empty (leave it out instead)"
        ))),
        other => Ok(other.cloned()),
    }
}

/// A JSON body; `None` for an empty body.
pub fn json_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Option<Value>> {
    let bytes = body.map_err(|e| match e {
        e @ BytesRejection::FailedToBufferBody(_) => match super::body::timed_out(&e) {
            Some(timeout) => Error::RequestTimeout(timeout),
            None => Error::PayloadTooLarge(limit),
        },
        other => Error::BadRequest(other.to_string()),
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::BadRequest(format!("malformed JSON body: {e}")))
}

/// A JSON body of type `T` (one of the `api` request types, which refuse unknown keys).
pub fn typed_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T> {
    optional_typed_body(body, limit)?
        .ok_or_else(|| Error::BadRequest("this route needs a JSON body".into()))
}

/// As [`typed_body`], for a route whose body may be left out (empty or whitespace: `None`).
pub fn optional_typed_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Option<T>> {
    let Some(value) = json_body(body, limit)? else {
        return Ok(None);
    };
    // serde would also take a struct from an array of its fields (`["c"]` for `{"name": "c"}`).
    if !value.is_object() {
        return Err(Error::BadRequest("the body must be a JSON object".into()));
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| Error::BadRequest(format!("invalid body: {e}")))
}

/// Only these keys may appear in a JSON object body.
pub fn only_keys(body: &Value, allowed: &[&str]) -> Result<()> {
    let object = body
        .as_object()
        .ok_or_else(|| Error::BadRequest("the body must be a JSON object".into()))?;
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(Error::BadRequest(format!(
            "unknown key {} in body (allowed: {})",
            Value::from(unknown.as_str()),
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}
