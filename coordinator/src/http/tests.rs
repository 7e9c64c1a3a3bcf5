//! The handler layer in process: requests go through the whole router (`ServiceExt::oneshot`),
//! with a database that refuses connections. Everything decided before the database is asked
//! (authentication forms, scopes, paths, query parameters, bodies, the status map, the OpenAPI
//! document against the routes) is checked here; what the database answers is the end-to-end
//! tests' business (tests/coordinator/).

use super::{app, document};
use crate::api;
use crate::api::ErrorBody;
use crate::auth::{Admin, Principal};
use crate::config::Config;
use crate::db::Executor;
use crate::error::Error;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use clap::Parser;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const EXECUTOR: &str = "cat_executor_of_c";
const ADMIN: &str = "caa_admin_of_everything";
const SCOPED: &str = "caa_admin_of_c";
const MAX_BODY: usize = 1000;

/// A router whose database refuses connections (port 1), with three tokens trusted: an executor
/// of colony "c", an admin of every colony and an admin of "c" only.
struct Harness {
    router: Router,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn harness_with(metrics: metrics_exporter_prometheus::PrometheusHandle) -> Harness {
    let config = Config::parse_from([
        "colony-coordinator",
        "--database-url",
        "host=127.0.0.1 port=1 user=nobody dbname=nothing",
        "--pool-timeout-ms",
        "300",
        "--max-body-bytes",
        &MAX_BODY.to_string(),
        "--reap",
        "off",
    ]);
    let shutdown = CancellationToken::new();
    let replica = crate::start(Arc::new(config), metrics, shutdown.clone()).expect("start");
    let state = replica.state.clone();
    state.tokens.insert(
        EXECUTOR,
        Principal::Executor(Executor {
            colony: "c".into(),
            name: "e".into(),
            executor_type: "t".into(),
            location: None,
        }),
    );
    state.tokens.insert(
        ADMIN,
        Principal::Admin(Admin {
            name: "root".into(),
            colonies: None,
        }),
    );
    state.tokens.insert(
        SCOPED,
        Principal::Admin(Admin {
            name: "ops".into(),
            colonies: Some(vec!["c".into()]),
        }),
    );
    Harness {
        router: app(state),
        shutdown,
    }
}

fn harness() -> Harness {
    harness_with(crate::metrics::recorder().handle())
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    /// The error body, which must be exactly the documented shape.
    fn error(&self) -> ErrorBody {
        serde_json::from_value(self.body.clone())
            .unwrap_or_else(|e| panic!("not an error body ({e}): {}", self.body))
    }

    fn assert_error(&self, status: StatusCode, message_part: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        let error = self.error();
        assert_eq!(error.error.code, Error::code(status), "{}", self.body);
        assert!(
            error.error.message.contains(message_part),
            "{:?} does not mention {message_part:?}",
            error.error.message
        );
    }
}

async fn send_raw(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn send(
    router: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(text) => Body::from(text.to_owned()),
        None => Body::empty(),
    };
    send_raw(router, request.body(body).unwrap()).await
}

fn refused(sqlstate: &str) -> Error {
    Error::Refused {
        sqlstate: sqlstate.into(),
        message: format!("refused with {sqlstate}"),
    }
}

/// How many variants `Error` has; `variant_index` numbers them (no wildcard: a new variant does
/// not compile until it is numbered here, and then the test below needs a case for it).
const VARIANTS: usize = 13;

fn variant_index(error: &Error) -> usize {
    match error {
        Error::Unauthorized(_) => 0,
        Error::Forbidden(_) => 1,
        Error::NotFound(_) => 2,
        Error::MethodNotAllowed(_) => 3,
        Error::BadRequest(_) => 4,
        Error::PayloadTooLarge(_) => 5,
        Error::RequestTimeout(_) => 6,
        Error::TooManyRequests(_) => 7,
        Error::Unavailable(_) => 8,
        Error::OutcomeUnknown(_) => 9,
        Error::ShuttingDown => 10,
        Error::Refused { .. } => 11,
        Error::Internal(_) => 12,
    }
}

#[tokio::test]
async fn every_error_variant_maps_to_its_status_and_the_json_shape() {
    let cases: Vec<(Error, StatusCode, Option<&str>)> = vec![
        (
            Error::Unauthorized("no token"),
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (Error::Forbidden("no".into()), StatusCode::FORBIDDEN, None),
        (Error::NotFound("gone".into()), StatusCode::NOT_FOUND, None),
        (
            Error::MethodNotAllowed("not so".into()),
            StatusCode::METHOD_NOT_ALLOWED,
            None,
        ),
        (
            Error::BadRequest("bad".into()),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            Error::PayloadTooLarge(10),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            Error::RequestTimeout(std::time::Duration::from_millis(5)),
            StatusCode::REQUEST_TIMEOUT,
            None,
        ),
        (
            Error::TooManyRequests("many".into()),
            StatusCode::TOO_MANY_REQUESTS,
            None,
        ),
        (
            Error::Unavailable("down".into()),
            StatusCode::SERVICE_UNAVAILABLE,
            None,
        ),
        (Error::ShuttingDown, StatusCode::SERVICE_UNAVAILABLE, None),
        (
            Error::OutcomeUnknown("connection closed".into()),
            StatusCode::GATEWAY_TIMEOUT,
            None,
        ),
        (
            Error::Internal("secret detail".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
        ),
    ];
    let sqlstates = [
        ("22023", StatusCode::BAD_REQUEST),
        ("22004", StatusCode::BAD_REQUEST),
        ("22P02", StatusCode::BAD_REQUEST),
        ("22003", StatusCode::BAD_REQUEST),
        ("22001", StatusCode::BAD_REQUEST),
        ("22021", StatusCode::BAD_REQUEST),
        ("22007", StatusCode::BAD_REQUEST),
        ("22008", StatusCode::BAD_REQUEST),
        ("28000", StatusCode::UNAUTHORIZED),
        ("42501", StatusCode::FORBIDDEN),
        ("P0002", StatusCode::NOT_FOUND),
        ("55000", StatusCode::CONFLICT),
        ("23505", StatusCode::CONFLICT),
        ("54000", StatusCode::PAYLOAD_TOO_LARGE),
        ("XX000", StatusCode::INTERNAL_SERVER_ERROR),
        ("40001", StatusCode::INTERNAL_SERVER_ERROR),
    ];
    let cases: Vec<_> = cases
        .into_iter()
        .chain(
            sqlstates
                .iter()
                .map(|(code, status)| (refused(code), *status, Some(*code))),
        )
        .collect();
    let covered: BTreeSet<usize> = cases.iter().map(|(e, ..)| variant_index(e)).collect();
    assert_eq!(
        covered,
        (0..VARIANTS).collect(),
        "a case for every variant of Error"
    );
    for (error, status, sqlstate) in cases {
        let shown = error.to_string();
        let response = axum::response::IntoResponse::into_response(error);
        assert_eq!(response.status(), status, "{shown}");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body.error.code, Error::code(status), "{shown}");
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // Internals are logged, never returned.
            assert_eq!(body.error.message, "internal error", "{shown}");
            assert_eq!(body.error.sqlstate, None, "{shown}");
        } else {
            assert_eq!(body.error.message, shown);
            assert_eq!(body.error.sqlstate.as_deref(), sqlstate, "{shown}");
        }
        // Nothing but the documented keys.
        let raw: Value = serde_json::from_slice(&bytes).unwrap();
        let keys: BTreeSet<&str> = raw["error"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let expected: BTreeSet<&str> = if body.error.sqlstate.is_some() {
            ["code", "message", "sqlstate"].into()
        } else {
            ["code", "message"].into()
        };
        assert_eq!(keys, expected, "{shown}");
    }
    let unauthorized =
        axum::response::IntoResponse::into_response(Error::Unauthorized("who are you"));
    assert_eq!(unauthorized.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let timeout = axum::response::IntoResponse::into_response(Error::RequestTimeout(
        std::time::Duration::from_millis(5),
    ));
    assert_eq!(timeout.headers()[header::CONNECTION], "close");
}

#[tokio::test]
async fn bearer_headers_are_read_in_every_allowed_form_and_refused_otherwise() {
    let h = harness();
    let stats = "/v1/colonies/c/stats";
    let with_header = |value: &'static [u8]| {
        Request::builder()
            .uri(stats)
            .header(
                header::AUTHORIZATION,
                HeaderValue::from_bytes(value).unwrap(),
            )
            .body(Body::empty())
            .unwrap()
    };
    let missing = send(&h.router, Method::GET, stats, None, None).await;
    missing.assert_error(StatusCode::UNAUTHORIZED, "missing Authorization");
    assert_eq!(missing.headers[header::WWW_AUTHENTICATE], "Bearer");
    for bad in [
        &b"Basic dXNlcjpwYXNz"[..],
        b"Bearer",
        b"Bearer    ",
        b"Token cat_executor_of_c",
        b"Bearer\tcat_executor_of_c",
        b"Bearer caf\xc3\xa9",
    ] {
        send_raw(&h.router, with_header(bad))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "malformed Authorization");
    }
    let long = format!("Bearer cat_{}", "x".repeat(600));
    let request = Request::builder()
        .uri(stats)
        .header(header::AUTHORIZATION, long)
        .body(Body::empty())
        .unwrap();
    send_raw(&h.router, request)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "malformed Authorization");

    // Any case of the scheme, any spaces around the token: the token is accepted, and the
    // request goes on to the (unreachable) database.
    for good in [
        &b"Bearer cat_executor_of_c"[..],
        b"bearer cat_executor_of_c",
        b"BEARER   cat_executor_of_c  ",
        b"  Bearer cat_executor_of_c",
    ] {
        send_raw(&h.router, with_header(good))
            .await
            .assert_error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    }
    // A token nobody has cached is looked up, which needs the database.
    send(&h.router, Method::GET, stats, Some("cat_unknown"), None)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
}

#[tokio::test]
async fn tokens_reach_only_their_routes_and_colonies() {
    let h = harness();
    let r = &h.router;
    // Executor routes refuse admin tokens; admin routes refuse executor tokens.
    for (method, uri) in [
        (Method::POST, "/v1/colonies/c/assign?timeout=0"),
        (Method::POST, "/v1/processes/1/close"),
        (Method::POST, "/v1/processes/1/fail"),
        (Method::POST, "/v1/processes/1/logs"),
        (Method::POST, "/v1/processes/close"),
        (Method::POST, "/v1/executors/heartbeat"),
    ] {
        send(r, method, uri, Some(ADMIN), None)
            .await
            .assert_error(StatusCode::FORBIDDEN, "admin token cannot");
    }
    for (method, uri, body) in [
        (Method::GET, "/v1/colonies", None),
        (Method::POST, "/v1/colonies", Some(r#"{"name": "x"}"#)),
        (Method::DELETE, "/v1/colonies/c", None),
        (Method::GET, "/v1/colonies/c/executors", None),
        (
            Method::POST,
            "/v1/colonies/c/executors",
            Some(r#"{"name": "x", "executortype": "t"}"#),
        ),
        (Method::DELETE, "/v1/colonies/c/executors/e", None),
        (Method::POST, "/v1/colonies/c/pause", None),
        (Method::POST, "/v1/colonies/c/resume", None),
        (
            Method::PUT,
            "/v1/colonies/c/strict",
            Some(r#"{"strict": true}"#),
        ),
        (Method::GET, "/v1/colonies/c/processes", None),
        (Method::GET, "/v1/colonies/c/queues", None),
    ] {
        send(r, method, uri, Some(EXECUTOR), body)
            .await
            .assert_error(StatusCode::FORBIDDEN, "needs an admin token");
    }
    // A colony the token does not reach looks like none, before the database is asked.
    for (method, uri, token) in [
        (Method::GET, "/v1/colonies/d/stats", EXECUTOR),
        (Method::POST, "/v1/colonies/d/assign?timeout=0", EXECUTOR),
        (Method::POST, "/v1/colonies/d/processes", EXECUTOR),
        (Method::POST, "/v1/colonies/d/workflows", EXECUTOR),
        (Method::GET, "/v1/colonies/d/stats", SCOPED),
        (Method::GET, "/v1/colonies/d/executors", SCOPED),
        (Method::DELETE, "/v1/colonies/d/executors/e", SCOPED),
        (Method::DELETE, "/v1/colonies/d", SCOPED),
        (Method::POST, "/v1/colonies/d/pause", SCOPED),
        (Method::POST, "/v1/colonies/d/resume", SCOPED),
        (Method::GET, "/v1/colonies/d/processes", SCOPED),
        (Method::GET, "/v1/colonies/d/queues", SCOPED),
        (Method::POST, "/v1/colonies/d/processes", SCOPED),
    ] {
        send(r, method, uri, Some(token), Some("{}"))
            .await
            .assert_error(StatusCode::NOT_FOUND, "unknown colony \"d\"");
    }
    // Within reach, the request goes on to the database.
    for token in [ADMIN, SCOPED] {
        send(r, Method::GET, "/v1/colonies/c/queues", Some(token), None)
            .await
            .assert_error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    }
    send(r, Method::GET, "/v1/colonies/d/queues", Some(ADMIN), None)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
}

#[tokio::test]
async fn path_segments_are_decoded_and_bad_ids_refused() {
    let h = harness();
    let r = &h.router;
    for id in ["abc", "1.5", "99999999999999999999", "%20"] {
        send(
            r,
            Method::GET,
            &format!("/v1/processes/{id}"),
            Some(EXECUTOR),
            None,
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "process id must be an integer");
    }
    send(r, Method::POST, "/v1/processes/x/cancel", Some(ADMIN), None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "process id must be an integer");
    // Percent-encoded names are decoded: "c/d" is a colony name of its own, not "c".
    send(
        r,
        Method::GET,
        "/v1/colonies/c%2Fd/stats",
        Some(EXECUTOR),
        None,
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "unknown colony \"c/d\"");
    send(
        r,
        Method::GET,
        "/v1/colonies/%63/stats",
        Some(EXECUTOR),
        None,
    )
    .await
    .assert_error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    // Not UTF-8 once decoded.
    send(
        r,
        Method::GET,
        "/v1/colonies/%FF/stats",
        Some(EXECUTOR),
        None,
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad path");
    send(
        r,
        Method::DELETE,
        "/v1/colonies/c/executors/%C3%28",
        Some(ADMIN),
        None,
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad path");
}

#[tokio::test]
async fn query_parameters_are_checked_before_the_database() {
    let h = harness();
    let r = &h.router;
    let cases = [
        ("/v1/colonies/c/assign?timeout=61", EXECUTOR, "timeout"),
        ("/v1/colonies/c/assign?max=0", EXECUTOR, "max must be"),
        (
            "/v1/colonies/c/assign?wait=1",
            EXECUTOR,
            "unknown query parameter \"wait\"",
        ),
        (
            "/v1/colonies/c/processes?limit=0",
            ADMIN,
            "limit must be an integer between 1 and 1000",
        ),
        (
            "/v1/colonies/c/processes?limit=1001",
            ADMIN,
            "limit must be",
        ),
        ("/v1/colonies/c/processes?limit=ten", ADMIN, "limit must be"),
        (
            "/v1/colonies/c/processes?state=sleeping",
            ADMIN,
            "state must be one of",
        ),
        (
            "/v1/colonies/c/processes?state=5",
            ADMIN,
            "state must be one of",
        ),
        (
            "/v1/colonies/c/processes?order=oldest",
            ADMIN,
            "order must be",
        ),
        (
            "/v1/colonies/c/processes?workflow=w",
            ADMIN,
            "workflow must be",
        ),
        (
            "/v1/colonies/c/processes?after=",
            ADMIN,
            "after must not be empty",
        ),
        (
            "/v1/colonies/c/processes?executortype=",
            ADMIN,
            "executortype must not be empty",
        ),
        (
            "/v1/colonies/c/processes?colony=d",
            ADMIN,
            "unknown query parameter \"colony\"",
        ),
        ("/v1/colonies/c/executors?limit=-1", ADMIN, "limit must be"),
        (
            "/v1/colonies/c/executors?state=1",
            ADMIN,
            "unknown query parameter",
        ),
        ("/v1/colonies?limit=0", ADMIN, "limit must be"),
    ];
    for (uri, token, message) in cases {
        let method = if uri.contains("/assign") {
            Method::POST
        } else {
            Method::GET
        };
        send(r, method, uri, Some(token), None)
            .await
            .assert_error(StatusCode::BAD_REQUEST, message);
    }
    // Well-formed ones (names and numbers for states, any case) go on to the database.
    for uri in [
        "/v1/colonies/c/processes?state=Running&limit=1000&order=ended",
        "/v1/colonies/c/processes?state=2&executortype=t&location=edge&executor=e&workflow=7",
        "/v1/colonies/c/processes?since=2024-01-01T00:00:00Z&until=2025-01-01T00:00:00Z",
        "/v1/colonies/c/executors?after=e&limit=1",
        "/v1/colonies?after=c",
    ] {
        send(r, Method::GET, uri, Some(ADMIN), None)
            .await
            .assert_error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    }
}

#[tokio::test]
async fn json_bodies_are_checked_before_the_database() {
    let h = harness();
    let r = &h.router;
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(MAX_BODY));
    let cases: Vec<(Method, &str, &str, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/v1/colonies",
            "",
            StatusCode::BAD_REQUEST,
            "needs a JSON body",
        ),
        (
            Method::POST,
            "/v1/colonies",
            "{\"name\": ",
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            Method::POST,
            "/v1/colonies",
            "[]",
            StatusCode::BAD_REQUEST,
            "must be a JSON object",
        ),
        (
            Method::POST,
            "/v1/colonies",
            r#"["c"]"#,
            StatusCode::BAD_REQUEST,
            "must be a JSON object",
        ),
        (
            Method::PUT,
            "/v1/colonies/c/strict",
            "[true]",
            StatusCode::BAD_REQUEST,
            "must be a JSON object",
        ),
        (
            Method::POST,
            "/v1/colonies",
            r#"{"name": 1}"#,
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            Method::POST,
            "/v1/colonies",
            r#"{}"#,
            StatusCode::BAD_REQUEST,
            "missing field `name`",
        ),
        (
            Method::POST,
            "/v1/colonies",
            r#"{"name": "x", "paused": true}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `paused`",
        ),
        (
            Method::POST,
            "/v1/colonies",
            &big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 1000 bytes",
        ),
        (
            Method::POST,
            "/v1/colonies/c/executors",
            r#"{"name": "x"}"#,
            StatusCode::BAD_REQUEST,
            "missing field `executortype`",
        ),
        (
            Method::POST,
            "/v1/colonies/c/executors",
            r#"{"name": "x", "executortype": "t", "token": "mine"}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `token`",
        ),
        (
            Method::POST,
            "/v1/colonies/c/executors",
            r#"{"name": "x", "executortype": "t", "location": 3}"#,
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            Method::PUT,
            "/v1/colonies/c/strict",
            r#"{"strict": "yes"}"#,
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            Method::PUT,
            "/v1/colonies/c/strict",
            r#"{"strict": null}"#,
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            Method::PUT,
            "/v1/colonies/c/strict",
            "",
            StatusCode::BAD_REQUEST,
            "needs a JSON body",
        ),
    ];
    for (method, uri, body, status, message) in cases {
        send(r, method, uri, Some(ADMIN), Some(body))
            .await
            .assert_error(status, message);
    }
    let executor_cases = [
        (
            "/v1/processes/1/close",
            r#"{"outputs": 1}"#,
            "unknown key \"outputs\"",
        ),
        ("/v1/processes/1/close", "[1]", "must be a JSON object"),
        (
            "/v1/processes/1/fail",
            r#"{"errors": "x"}"#,
            "errors must be an array of strings",
        ),
        ("/v1/processes/1/fail", "", "the body must be"),
        (
            "/v1/processes/1/logs",
            r#"{"message": 1}"#,
            "message must be a string",
        ),
        ("/v1/processes/close", r#"{"id": 1}"#, "must be an array"),
        (
            "/v1/colonies/c/processes",
            "7",
            "spec (JSON object) or an array",
        ),
    ];
    for (uri, body, message) in executor_cases {
        send(r, Method::POST, uri, Some(EXECUTOR), Some(body))
            .await
            .assert_error(StatusCode::BAD_REQUEST, message);
    }
    // ColonyOS's spelling and ours are both accepted; the request then needs the database.
    for body in [
        r#"{"name": "x", "executortype": "t"}"#,
        r#"{"name": "x", "executor_type": "t", "location": ""}"#,
    ] {
        send(
            r,
            Method::POST,
            "/v1/colonies/c/executors",
            Some(ADMIN),
            Some(body),
        )
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_the_json_error_shape() {
    let h = harness();
    send(&h.router, Method::GET, "/v2/nothing", None, None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "no route for GET /v2/nothing");
    let wrong = send(
        &h.router,
        Method::DELETE,
        "/v1/colonies/c/stats",
        Some(ADMIN),
        None,
    )
    .await;
    wrong.assert_error(StatusCode::METHOD_NOT_ALLOWED, "does not take DELETE");
    // RFC 9110: a 405 says which methods the path takes.
    assert_eq!(wrong.headers[header::ALLOW], "GET,HEAD");
}

#[tokio::test]
async fn the_injected_recorder_counts_what_handlers_do() {
    let recorder = crate::metrics::recorder();
    let h = harness_with(recorder.handle());
    // Handlers record into the recorder of the thread they run on (this test's runtime has
    // one thread), so nothing here touches the process's global recorder.
    let _local = metrics::set_default_local_recorder(&recorder);
    for _ in 0..2 {
        send(
            &h.router,
            Method::GET,
            "/v1/colonies/c/stats",
            Some(EXECUTOR),
            None,
        )
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    }
    let text = send(&h.router, Method::GET, "/metrics", None, None).await;
    assert_eq!(text.status, StatusCode::OK);
    let text = text.body.as_str().expect("Prometheus text").to_owned();
    assert_eq!(
        testkit::metrics_text::sum(&text, crate::metrics::DB_QUERIES, &[]),
        2.0,
        "{text}"
    );
}

/// Every path the router serves, from its Debug output (axum has no other way to list them).
/// The test below fails if this finds too few, so a change in that output cannot make it pass
/// vacuously.
fn served_paths<S>(router: &Router<S>) -> BTreeSet<String> {
    let text = format!("{router:?}");
    // The fallback router (after "fallback_router") holds axum's catch-all paths, not ours.
    let (ours, _) = text
        .split_once("fallback_router")
        .expect("a Router's Debug names its fallback router");
    let mut paths = BTreeSet::new();
    let mut rest = ours;
    while let Some(start) = rest.find("RouteId(") {
        rest = &rest[start..];
        let Some(quote) = rest.find(": \"") else {
            break;
        };
        let after = &rest[quote + 3..];
        let end = after.find('"').expect("closing quote");
        let path = &after[..end];
        paths.insert(path.to_owned());
        rest = &after[end..];
    }
    paths
}

/// `path` with sample values for its parameters.
fn sample(path: &str) -> String {
    path.replace("{colony}", "c")
        .replace("{name}", "e")
        .replace("{id}", "1")
}

#[tokio::test]
async fn the_openapi_document_and_the_router_serve_the_same_routes() {
    let document = serde_json::to_value(document()).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let documented: BTreeMap<String, BTreeSet<String>> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
                .map(|k| k.to_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect();

    // Paths: the router's (as app() builds it, before the fallbacks) are the document's.
    let (router, _) = super::api().split_for_parts();
    let served = served_paths(&router);
    assert!(served.len() >= 20, "found only {served:?}");
    let documented_paths: BTreeSet<String> = documented.keys().cloned().collect();
    assert_eq!(served, documented_paths);

    // Methods: on every path, each documented method is served (whatever it answers without
    // a token, it is not "no route" or "wrong method"), and every other method is 405.
    let h = harness();
    for (path, methods) in &documented {
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            let answer = send(
                &h.router,
                Method::from_bytes(method.as_bytes()).unwrap(),
                &sample(path),
                None,
                None,
            )
            .await;
            if methods.contains(method) {
                assert!(
                    answer.status != StatusCode::METHOD_NOT_ALLOWED
                        && !(answer.status == StatusCode::NOT_FOUND
                            && answer.body.to_string().contains("no route")),
                    "{method} {path} is documented but not served: {} {}",
                    answer.status,
                    answer.body
                );
            } else {
                assert_eq!(
                    answer.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served but not documented"
                );
            }
        }
    }

    // Every operation answers errors in the documented shape, and every /v1 one is secured.
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if path.starts_with("/v1/") {
                assert_eq!(
                    operation["security"],
                    json!([{"bearer": []}]),
                    "{method} {path}"
                );
                for status in ["401", "500", "503"] {
                    assert_eq!(
                        operation["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    // Operation ids name client methods: each must be unique.
    let mut ids = BTreeSet::new();
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            let id = operation["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        }
    }
    assert!(document["components"]["schemas"]["ErrorBody"].is_object());
    assert!(document["components"]["schemas"]["ProcessPage"].is_object());

    // And it is what GET /openapi.json serves.
    let served = send(&h.router, Method::GET, "/openapi.json", None, None).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, document);
}

#[test]
fn the_api_types_round_trip_what_the_database_sends() {
    // As list_processes() builds an item: to_jsonb of a process minus four keys.
    let item = json!({
        "id": 7, "colony": "c", "state": 1, "executor_type": "t", "location": null,
        "executor_names": ["a"], "assigned_executor": "e", "priority": -3, "funcname": "f",
        "label": null, "nodename": null, "retries": 0,
        "submitted_at": "2024-05-01T12:00:00.123456+00:00", "started_at": null,
        "ended_at": null, "exec_deadline": null, "workflow_id": null
    });
    let summary: api::ProcessSummary = serde_json::from_value(item.clone()).unwrap();
    assert_eq!(serde_json::to_value(&summary).unwrap(), item);
}
