//! Authentication and bad input over HTTP: the right 4xx, a JSON error body, and no change.

use super::{add_executor, setup};
use e2e::{fingerprint, spec};
use reqwest::Method;
use serde_json::{Value, json};

struct Case {
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<String>,
    status: u16,
}

fn case(method: Method, path: &str, token: Option<&str>, body: Option<&str>, status: u16) -> Case {
    Case {
        method,
        path: path.to_owned(),
        token: token.map(str::to_owned),
        body: body.map(str::to_owned),
        status,
    }
}

#[tokio::test]
async fn every_bad_request_gets_a_json_4xx_and_changes_nothing() {
    let (_db, client, coordinators) =
        setup("coord_http_errors", 1, &["--max-body-bytes", "20000"]).await;
    let coordinator = &coordinators[0];
    let mine = add_executor(&client, "c", "e", "t", None).await;
    let other = add_executor(&client, "c", "other", "t", None).await;
    client
        .execute("SELECT colony_assign.add_colony('d')", &[])
        .await
        .unwrap();
    let foreign = add_executor(&client, "d", "x", "t", None).await;
    let foreign_process: i64 = client
        .query_one(
            "SELECT colony_assign.submit('d', $1)",
            &[&spec("t", json!({}), json!({}))],
        )
        .await
        .unwrap()
        .get(0);
    // A process running under "e", and one that is finished.
    client
        .query_one(
            "SELECT colony_assign.submit('c', $1)",
            &[&spec("t", json!({}), json!({}))],
        )
        .await
        .unwrap();
    let running: i64 = client
        .query_one("SELECT id FROM colony_assign.assign('c', 'e')", &[])
        .await
        .unwrap()
        .get(0);
    client
        .query_one(
            "SELECT colony_assign.submit('c', $1)",
            &[&spec("t", json!({}), json!({}))],
        )
        .await
        .unwrap();
    let done: i64 = client
        .query_one("SELECT id FROM colony_assign.assign('c', 'e')", &[])
        .await
        .unwrap()
        .get(0);
    client
        .execute("SELECT colony_assign.close($1, 'e')", &[&done])
        .await
        .unwrap();

    let big = format!(
        "{{\"funcname\": \"{}\", \"conditions\": {{\"executortype\": \"t\"}}}}",
        "x".repeat(30_000)
    );
    let (m, o, f) = (
        Some(mine.as_str()),
        Some(other.as_str()),
        Some(foreign.as_str()),
    );
    let submit = "/v1/colonies/c/processes";
    let cases = [
        // 401: no token, a bad one, a malformed header.
        case(
            Method::POST,
            "/v1/colonies/c/assign?timeout=0",
            None,
            None,
            401,
        ),
        case(
            Method::POST,
            "/v1/colonies/c/assign?timeout=0",
            Some("cat_not_a_token"),
            None,
            401,
        ),
        case(Method::POST, submit, Some(""), Some("{}"), 401),
        case(
            Method::GET,
            "/v1/colonies/c/stats",
            Some("cat_not_a_token"),
            None,
            401,
        ),
        // 404: another colony looks like none (its processes too).
        case(
            Method::POST,
            "/v1/colonies/d/assign?timeout=0",
            m,
            None,
            404,
        ),
        case(
            Method::POST,
            "/v1/colonies/d/processes",
            m,
            Some(r#"{"funcname":"f","conditions":{"executortype":"t"}}"#),
            404,
        ),
        case(Method::GET, "/v1/colonies/d/stats", m, None, 404),
        case(
            Method::GET,
            &format!("/v1/processes/{foreign_process}"),
            m,
            None,
            404,
        ),
        // 403: another executor's process.
        case(
            Method::POST,
            &format!("/v1/processes/{running}/close"),
            o,
            Some("{}"),
            403,
        ),
        // 404: another colony's process, to its executors, is no process at all.
        case(
            Method::POST,
            &format!("/v1/processes/{running}/fail"),
            f,
            Some(r#"{"errors":["x"]}"#),
            404,
        ),
        // 400: malformed JSON, invalid specs, bad shapes, bad ids and parameters.
        case(Method::POST, submit, m, Some("{\"funcname\": "), 400),
        case(Method::POST, submit, m, Some("not json"), 400),
        case(Method::POST, submit, m, Some("42"), 400),
        case(
            Method::POST,
            submit,
            m,
            Some(r#"{"funcname":"f","conditions":{"executortype":"t"},"bogus":1}"#),
            400,
        ),
        case(
            Method::POST,
            submit,
            m,
            Some(r#"[{"funcname":"f","conditions":{"executortype":"t"}}, 7]"#),
            400,
        ),
        case(
            Method::POST,
            submit,
            m,
            Some(r#"{"funcname":"f","priority":"high","conditions":{"executortype":"t"}}"#),
            400,
        ),
        case(
            Method::POST,
            &format!("/v1/processes/{running}/close"),
            m,
            Some(r#"{"result": 1}"#),
            400,
        ),
        case(
            Method::POST,
            &format!("/v1/processes/{running}/close"),
            m,
            Some("[1]"),
            400,
        ),
        case(
            Method::POST,
            &format!("/v1/processes/{running}/fail"),
            m,
            Some(r#"{"errors": "x"}"#),
            400,
        ),
        case(
            Method::POST,
            &format!("/v1/processes/{running}/fail"),
            m,
            Some(r#"{"errors": [1]}"#),
            400,
        ),
        case(
            Method::POST,
            &format!("/v1/processes/{running}/fail"),
            m,
            None,
            400,
        ),
        case(Method::GET, "/v1/processes/abc", m, None, 400),
        case(
            Method::GET,
            "/v1/processes/99999999999999999999",
            m,
            None,
            400,
        ),
        case(
            Method::POST,
            "/v1/colonies/c/assign?timeout=600",
            m,
            None,
            400,
        ),
        // 413: over the body limit (this coordinator allows 20,000 bytes).
        case(Method::POST, submit, m, Some(&big), 413),
        // 404: unknown ids.
        case(Method::GET, "/v1/processes/987654321", m, None, 404),
        case(
            Method::POST,
            "/v1/processes/987654321/close",
            m,
            Some("{}"),
            404,
        ),
        // 409: closing twice / something not running.
        case(
            Method::POST,
            &format!("/v1/processes/{done}/close"),
            m,
            Some("{}"),
            409,
        ),
        case(
            Method::POST,
            &format!("/v1/processes/{done}/fail"),
            m,
            Some(r#"{"errors":["late"]}"#),
            409,
        ),
    ];

    for case in cases {
        let before = fingerprint(&client).await;
        let mut request = coordinator
            .http
            .request(case.method.clone(), coordinator.url(&case.path));
        if let Some(token) = &case.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(body) = &case.body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.clone());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, case.status, "{} {}: {body}", case.method, case.path);
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{} {}: JSON error body, got {body}",
            case.method,
            case.path
        );
        assert_eq!(
            fingerprint(&client).await,
            before,
            "{} {} changed the tables",
            case.method,
            case.path
        );
    }
}

/// RFC 9110: the authentication scheme is case-insensitive; a missing or other scheme is 401.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let (_db, client, coordinators) = setup("coord_bearer_case", 1, &[]).await;
    let coordinator = &coordinators[0];
    let token = add_executor(&client, "c", "e", "t", None).await;
    for (header, status) in [
        (format!("Bearer {token}"), 200),
        (format!("bearer {token}"), 200),
        (format!("BEARER {token}"), 200),
        (format!("Basic {token}"), 401),
        (token.clone(), 401),
    ] {
        let response = coordinator
            .http
            .get(coordinator.url("/v1/colonies/c/stats"))
            .header("Authorization", &header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{header:?}");
    }
}

/// A submit retried with its Idempotency-Key returns the first call's ids and creates nothing;
/// the same key with another body, an empty key or a key that is not visible ASCII is 400.
#[tokio::test]
async fn a_retried_submit_with_its_idempotency_key_creates_nothing() {
    let (_db, client, coordinators) = setup("coord_idempotency_key", 1, &[]).await;
    let coordinator = &coordinators[0];
    let token = add_executor(&client, "c", "e", "t", None).await;
    let submit = |key: &'static [u8], body: Value| {
        coordinator
            .http
            .post(coordinator.url("/v1/colonies/c/processes"))
            .bearer_auth(&token)
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(key).unwrap(),
            )
            .json(&body)
            .send()
    };
    let batch = json!([
        spec("t", json!({}), json!({"args": [1]})),
        spec("t", json!({}), json!({"args": [2]}))
    ]);
    let first = submit(b"key-1", batch.clone()).await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    let again = submit(b"key-1", batch.clone()).await.unwrap();
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        first,
        "the first call's ids"
    );
    let count = || async {
        client
            .query_one("SELECT count(*) FROM colony_assign.processes", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(count().await, 2);
    let before = fingerprint(&client).await;
    for (key, body) in [
        (
            &b"key-1"[..],
            json!([spec("t", json!({}), json!({"args": [3]}))]),
        ),
        (b"", batch.clone()),
        (b"caf\xc3\xa9", batch.clone()),
    ] {
        let response = submit(key, body).await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{key:?}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].is_string(), "{error}");
    }
    assert_eq!(
        fingerprint(&client).await,
        before,
        "refused submits change nothing"
    );
    // Another key is another submit.
    let other = submit(b"key-2", batch).await.unwrap();
    assert_eq!(other.status().as_u16(), 201);
    assert_eq!(count().await, 4);
}
