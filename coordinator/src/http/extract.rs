//! Request parsing whose failures become our JSON errors (axum's own rejections are plain
//! text): the authenticated executor, path ids, query parameters and JSON bodies.

use super::AppState;
use crate::db::Executor;
use crate::error::{Error, Result};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;

/// The executor whose bearer token came with the request.
pub struct Authed(pub Executor);

impl FromRequestParts<AppState> for Authed {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(Error::Unauthorized("missing Authorization: Bearer <token>"))?;
        // The scheme is case-insensitive (RFC 9110, section 11.1).
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty() && t.len() <= 512)
            .ok_or(Error::Unauthorized(
                "malformed Authorization header; expected Bearer <token>",
            ))?;
        Ok(Authed(state.tokens.authenticate(&state.db, token).await?))
    }
}

impl Authed {
    /// Executors act only on their own colony; another colony looks like one that does not
    /// exist (404), so a token learns nothing about the others.
    pub fn in_colony(&self, colony: &str) -> Result<&Executor> {
        if self.0.colony == colony {
            Ok(&self.0)
        } else {
            Err(Error::NotFound(format!(
                "unknown colony {}",
                serde_json::Value::from(colony)
            )))
        }
    }

    /// For an object found by id (`what`, e.g. "process 7"): another colony's looks like one
    /// that does not exist.
    pub fn sees(&self, colony: &str, what: &str) -> Result<()> {
        if self.0.colony == colony {
            Ok(())
        } else {
            Err(Error::NotFound(format!("unknown {what}")))
        }
    }
}

pub fn path_text(path: Result<Path<String>, PathRejection>) -> Result<String> {
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
