//! The contract a coordinator binary serves: its OpenAPI document against what it answers over
//! real HTTP, and what it does with a configuration it cannot use. (The router's own routes are
//! compared with the document in process: coordinator/src/http/tests.rs.)

use super::{add_executor, setup};
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;

/// `path` with sample values for its parameters.
fn sample(path: &str) -> String {
    path.replace("{colony}", "c")
        .replace("{name}", "e")
        .replace("{id}", "1")
}

/// The property names of schema `name`, following no further references.
fn properties(document: &Value, name: &str) -> BTreeSet<String> {
    document["components"]["schemas"][name]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {name}"))
        .keys()
        .cloned()
        .collect()
}

fn keys(object: &Value) -> BTreeSet<String> {
    object
        .as_object()
        .unwrap_or_else(|| panic!("an object, got {object}"))
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_documented_operation_is_served_and_answers_as_documented() {
    let (_db, client, coordinators) = setup("coord_openapi", 1, &[]).await;
    let coordinator = &coordinators[0];
    let response = coordinator
        .http
        .get(coordinator.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{paths:?}");
    // The dashboard's routes are documented like every other (tests/coordinator/ui.rs checks
    // what they serve), so the loop below covers them too.
    for path in ["/ui", "/ui/app.js", "/ui/app.css", "/ui/events"] {
        assert_eq!(paths[path]["get"]["tags"][0], "dashboard", "{path}");
    }

    // Without a token: every /v1 operation is served and answers its documented 401 with the
    // error body; the others answer one of their documented statuses. Methods a path does not
    // document are 405, in the same JSON shape.
    for (path, item) in paths {
        let documented: BTreeSet<String> = item.as_object().unwrap().keys().cloned().collect();
        for method in ["get", "put", "post", "delete", "patch"] {
            let answer = coordinator
                .http
                .request(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    coordinator.url(&sample(path)),
                )
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap();
            if documented.contains(method) {
                let responses = &item[method]["responses"];
                assert!(
                    responses.get(status.to_string()).is_some(),
                    "{method} {path}: {status} is not documented ({body})"
                );
                if path.starts_with("/v1/") {
                    assert_eq!(status, 401, "{method} {path} without a token");
                }
            } else {
                assert_eq!(status, 405, "{method} {path} is served but not documented");
            }
            if status >= 400 {
                let error: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {body}"));
                assert_eq!(keys(&error), BTreeSet::from(["error".to_owned()]));
            }
        }
    }

    // Answers carry exactly the documented properties.
    let token = add_executor(&client, "c", "e", "t", None).await;
    let root: String = client
        .query_one("SELECT colony_assign.add_admin('root')", &[])
        .await
        .unwrap()
        .get(0);
    client
        .execute(
            "SELECT colony_assign.submit('c', '{\"funcname\": \"f\", \"conditions\": {\"executortype\": \"t\"}}')",
            &[],
        )
        .await
        .unwrap();
    let get = |path: &'static str, token: String| async move {
        let response = coordinator
            .http
            .get(coordinator.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json::<Value>().await.unwrap()
    };
    let stats = get("/v1/colonies/c/stats", token.clone()).await;
    assert_eq!(keys(&stats), properties(&document, "Stats"));
    let colonies = get("/v1/colonies", root.clone()).await;
    assert_eq!(keys(&colonies), properties(&document, "ColonyPage"));
    assert_eq!(
        keys(&colonies["colonies"][0]),
        properties(&document, "Colony")
    );
    let executors = get("/v1/colonies/c/executors", root.clone()).await;
    assert_eq!(
        keys(&executors["executors"][0]),
        properties(&document, "ExecutorStatus")
    );
    let processes = get("/v1/colonies/c/processes", root.clone()).await;
    assert_eq!(keys(&processes), properties(&document, "ProcessPage"));
    assert_eq!(
        keys(&processes["processes"][0]),
        properties(&document, "ProcessSummary")
    );
    let queues = get("/v1/colonies/c/queues", root.clone()).await;
    assert_eq!(keys(&queues["queues"][0]), properties(&document, "Queue"));
    let process = get("/v1/processes/1", root).await;
    assert_eq!(keys(&process), properties(&document, "Process"));
}

/// A `--database-url` that does not parse stops the coordinator before it serves anything:
/// one line on stderr (without the string, which may hold a password) and a non-zero exit.
#[tokio::test]
async fn a_bad_database_url_is_a_startup_error() {
    let binary = testkit::Launch::for_tests("", "unused", &[]).binary;
    for url in [
        "host=127.0.0.1 port=notaport password=hunter2",
        "postgres://user:hunter2@127.0.0.1:99999999/db",
        "host=127.0.0.1 nosuchoption=hunter2",
    ] {
        let output = tokio::process::Command::new(&binary)
            .args(["--database-url", url, "--listen", "127.0.0.1:0"])
            .output()
            .await
            .unwrap();
        assert!(
            !output.status.success(),
            "{url}: exited {:?}",
            output.status
        );
        assert!(output.stdout.is_empty(), "{url}: it never listened");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("cannot start: invalid --database-url: invalid connection string"),
            "{url}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{url}: {stderr}");
    }
}
