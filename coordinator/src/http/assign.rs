//! The long-poll: `POST /v1/colonies/{colony}/assign?timeout=S&max=N`.
//!
//! Parks the executor on its keys, assigns, and if there is nothing, waits for a wake (a
//! notification, the catch-up, or the timeout) and assigns again — without answering the
//! client in between. Holds no database connection while parked.
//!
//! A claimed process must never be stranded by a client that went away: every assign call
//! runs in its own task, which gives the processes back (`release`) if the request is gone
//! by the time they arrive, and a response body that is dropped before hyper took its bytes
//! gives them back too.

use super::AppState;
use super::extract::{AsExecutor, path_text, query};
use crate::db::{Db, Executor};
use crate::error::{Error, Result};
use crate::metrics as m;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(long_poll))
}

fn longpoll_result(result: &'static str) {
    metrics::counter!(m::LONGPOLLS, "result" => result).increment(1);
}

/// Long-poll for work as the token's executor.
///
/// Registers the executor on its wake-up keys, assigns, and when nothing is there waits (holding
/// no database connection) for a wake, the timeout or shutdown, and assigns again. Answers 200
/// with up to `max` processes, now RUNNING and assigned to the executor, in queue order; or 204
/// when the timeout passes (and on shutdown).
#[utoipa::path(post, path = "/v1/colonies/{colony}/assign", tag = "executors",
    params(
        ("colony" = String, Path, description = "The executor's colony."),
        ("timeout" = Option<u64>, Query, description = "Seconds to wait, 0..=--max-timeout-s (default --default-timeout-s)."),
        ("max" = Option<i32>, Query, description = "Most processes to take, 1..=1000 (default 1)."),
    ),
    responses(
        (status = 200, description = "Processes now assigned to the executor.", body = [crate::api::Process]),
        (status = 204, description = "The timeout passed without work, or the replica is shutting down."),
        (status = 400, description = "A bad or unknown query parameter.", body = crate::api::ErrorBody),
        (status = 401, description = "The executor was removed while it waited.", body = crate::api::ErrorBody),
        (status = 403, description = "An admin token.", body = crate::api::ErrorBody),
        (status = 404, description = "Another colony than the executor's.", body = crate::api::ErrorBody),
        (status = 429, description = "The executor has --max-parked-per-executor long-polls parked here already.", body = crate::api::ErrorBody),
    ))]
async fn long_poll(
    State(state): State<AppState>,
    authed: AsExecutor,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response> {
    let colony = path_text(path)?;
    let executor = authed.in_colony(&colony)?.clone();
    let params = query(params, &["timeout", "max"])?;
    let max_timeout = state.config.max_timeout_s;
    let timeout = match params.get("timeout") {
        None => state.config.default_timeout_s.min(max_timeout),
        Some(t) => t
            .parse::<u64>()
            .ok()
            .filter(|t| *t <= max_timeout)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "timeout must be whole seconds between 0 and {max_timeout}"
                ))
            })?,
    };
    let max = match params.get("max") {
        None => 1,
        Some(n) => n
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| Error::BadRequest("max must be an integer between 1 and 1000".into()))?,
    };
    if state.shutdown.is_cancelled() {
        return Err(Error::ShuttingDown);
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let registration = state
        .notifier
        .register(&executor)
        .await
        .inspect_err(|_| longpoll_result("rejected"))?;
    loop {
        let woken_by = registration.begin_attempt();
        let processes = claim(&state.db, &executor, max)
            .await
            .inspect_err(|_| longpoll_result("error"))?;
        if woken_by.is_some() {
            let outcome = if processes.is_empty() {
                "lost_race"
            } else {
                "assigned"
            };
            metrics::counter!(m::WAKE_OUTCOMES, "outcome" => outcome).increment(1);
        }
        if !processes.is_empty() {
            drop(registration);
            longpoll_result("assigned");
            return Ok(deliver(state.db.clone(), executor, processes));
        }
        if registration.revoked() {
            longpoll_result("revoked");
            return Err(Error::Unauthorized("the executor was removed"));
        }
        tokio::select! {
            _ = registration.woken() => {}
            _ = tokio::time::sleep_until(deadline) => {
                longpoll_result("timeout");
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            _ = state.shutdown.cancelled() => {
                longpoll_result("shutdown");
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
        }
        if registration.revoked() {
            longpoll_result("revoked");
            return Err(Error::Unauthorized("the executor was removed"));
        }
    }
}

/// One assign call (coalesced with other long-polls', db.rs). If this request is dropped
/// meanwhile (client gone, shutdown), what it claimed goes straight back to WAITING.
async fn claim(db: &Db, executor: &Executor, max: i32) -> Result<Vec<Value>> {
    let started = Instant::now();
    let result = db.assign(executor, max).await;
    metrics::histogram!(m::ASSIGN_SECONDS).record(started.elapsed().as_secs_f64());
    result
}

/// 200 with the processes as a JSON array, in a body that gives them back if it is dropped
/// before hyper takes its bytes.
fn deliver(db: Db, executor: Executor, processes: Vec<Value>) -> Response {
    let ids = crate::db::ids(&processes);
    let bytes = Bytes::from(Value::Array(processes).to_string());
    let body = Delivery {
        bytes: Some(bytes),
        undelivered: Some((db, executor, ids)),
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::new(body),
    )
        .into_response()
}

struct Delivery {
    bytes: Option<Bytes>,
    undelivered: Option<(Db, Executor, Vec<i64>)>,
}

impl http_body::Body for Delivery {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.bytes.take() {
            Some(bytes) => {
                // Handed to the connection: from here on only the TCP stack can lose it.
                self.undelivered = None;
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some((db, executor, ids)) = self.undelivered.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { db.release(executor, ids).await });
        }
    }
}
