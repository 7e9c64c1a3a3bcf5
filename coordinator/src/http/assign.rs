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
use tokio::sync::watch;
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
        (status = 503, description = "The database is unreachable, or this replica lost its LISTEN connection (parked long-polls are answered 503 too): try another replica.", body = crate::api::ErrorBody),
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

    // A replica that cannot hear of new work (its LISTEN connection is down and does not come
    // back at once) parks nobody: the executor is better served by another replica.
    let mut listening = Listening {
        up: state.notifier.connection(),
        grace: RECONNECT_GRACE.min(state.config.listen_ping()),
    };
    if let Some(answer) = when_deaf(&state, &mut listening).await {
        return answer;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let registration = state
        .notifier
        .register(&executor)
        .await
        .inspect_err(|_| longpoll_result("rejected"))?;
    loop {
        let woken_by = registration.begin_attempt();
        let (processes, woken_meanwhile) =
            match claim_watching(&state, &registration, &mut listening, &executor, max).await {
                Ok(claimed) => claimed,
                Err(answer) => return answer,
            };
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
        if woken_meanwhile {
            continue;
        }
        tokio::select! {
            _ = registration.woken() => {}
            // The LISTEN connection went down and is not back within the grace: say so, and
            // the client moves on. A shorter blip is waited out here, not acted on: assigning
            // then would send every parked long-poll to the database at once (10,000 parked
            // made the replica's own queries wait a second); the catch-up that follows a
            // reconnect wakes exactly the keys that have work.
            _ = listening.lost() => return deaf(&state),
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

/// Longest one assign call may take before the long-poll answers 503. What it claims after
/// that is given back when it arrives (the batcher's `undelivered`, db.rs): the call itself is
/// never abandoned, so a claim committed behind a frozen link cannot be stranded by it.
const CLAIM_DEADLINE: Duration = Duration::from_secs(10);

fn unreachable() -> Error {
    Error::Unavailable(
        "this replica has lost its LISTEN connection to the database and cannot be told of new \
         work; try another replica"
            .into(),
    )
}

/// How long a long-poll waits for a lost LISTEN connection to come back before it answers 503.
/// A connection the server ended (a terminated backend) is replaced within about 100 ms; a dead
/// link (declared after 2 × `--listen-ping-ms` of silence) or a database that is down is not,
/// and every moment waited here is a moment the executor could be parked elsewhere.
const RECONNECT_GRACE: Duration = Duration::from_millis(300);

/// The LISTEN connection's state as a long-poll watches it (the notifier's `watch`: told of
/// every change, no polling, no wake-up of the parked).
struct Listening {
    /// True while the connection is up.
    up: watch::Receiver<bool>,
    /// How long a loss is given to heal before the long-poll answers 503: [`RECONNECT_GRACE`],
    /// or `--listen-ping-ms` if shorter.
    grace: Duration,
}

impl Listening {
    /// Whether the connection is up, or back within the grace.
    async fn up_within_grace(&mut self) -> bool {
        matches!(
            tokio::time::timeout(self.grace, self.up.wait_for(|up| *up)).await,
            Ok(Ok(_))
        )
    }

    /// Resolves once the connection has been down for the grace; never while it is up or
    /// comes back within the grace each time it drops.
    async fn lost(&mut self) {
        loop {
            // An error means the notifier is gone: nothing will tell of work any more.
            if self.up.wait_for(|up| !*up).await.is_err() || !self.up_within_grace().await {
                return;
            }
        }
    }
}

/// The answer of a long-poll that cannot be told of work: 503, or 204 when the replica is
/// shutting down (which also ends the LISTEN connection).
fn deaf(state: &AppState) -> Result<Response> {
    if state.shutdown.is_cancelled() {
        longpoll_result("shutdown");
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    longpoll_result("error");
    Err(unreachable())
}

/// None while the LISTEN connection is up, or once it is back within the grace; otherwise the
/// long-poll's answer ([`deaf`]).
async fn when_deaf(state: &AppState, listening: &mut Listening) -> Option<Result<Response>> {
    let back = tokio::select! {
        back = listening.up_within_grace() => back,
        _ = state.shutdown.cancelled() => false,
    };
    (!back).then(|| deaf(state))
}

/// One assign attempt, watching the registration and the LISTEN connection meanwhile: a wake
/// during the call is remembered (the caller then assigns again instead of waiting), and a
/// connection lost for the grace ends the wait with [`deaf`]'s answer. The call itself is never
/// abandoned: it goes on in the batcher, and what it claims is given back. The processes and
/// whether a wake came, or the long-poll's answer.
async fn claim_watching(
    state: &AppState,
    registration: &crate::notifier::Registration,
    listening: &mut Listening,
    executor: &Executor,
    max: i32,
) -> std::result::Result<(Vec<Value>, bool), Result<Response>> {
    let call = tokio::time::timeout(CLAIM_DEADLINE, claim(&state.db, executor, max));
    tokio::pin!(call);
    let lost = listening.lost();
    tokio::pin!(lost);
    let mut woken = false;
    let answered = loop {
        tokio::select! {
            answered = &mut call => break answered,
            _ = registration.woken(), if !woken => woken = true,
            _ = &mut lost => return Err(deaf(state)),
        }
    };
    match answered {
        Ok(Ok(processes)) => Ok((processes, woken)),
        Ok(Err(e)) => {
            longpoll_result("error");
            Err(Err(e))
        }
        Err(_) => {
            longpoll_result("error");
            Err(Err(Error::Unavailable(format!(
                "no answer from the database within {CLAIM_DEADLINE:?}"
            ))))
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
