//! The dashboard over real HTTP: its assets are served self-contained (nothing from another
//! host), its event stream takes admin tokens only, shows a scoped admin only its colonies,
//! reflects submitted and assigned work, and ends when the admin is removed.

use super::{add_executor, setup};
use e2e::{Coordinator, HttpExecutor};
use serde_json::{Value, json};
use tokio::time::Instant;

async fn add_admin(
    client: &tokio_postgres::Client,
    name: &str,
    colonies: Option<&[&str]>,
) -> String {
    let colonies: Option<Vec<&str>> = colonies.map(<[&str]>::to_vec);
    client
        .query_one(
            "SELECT colony_assign.add_admin($1, $2)",
            &[&name, &colonies],
        )
        .await
        .unwrap()
        .get(0)
}

/// An open `/ui/events` stream, read event by event.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(coordinator: &Coordinator, token: &str) -> Events {
        let response = coordinator
            .http
            .get(coordinator.url("/ui/events"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (name, data), skipping keep-alive comments; None when the stream ends.
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = Vec::new();
                for line in frame.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event = name.trim().to_owned();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push(d.strip_prefix(' ').unwrap_or(d));
                    }
                }
                if data.is_empty() && event == "message" {
                    continue;
                }
                return Some((event, data.join("\n")));
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Reads snapshots until one satisfies `condition` (within the deadline); returns it.
    async fn until(&mut self, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + e2e::DEADLINE;
        let mut last = Value::Null;
        loop {
            let next = tokio::time::timeout_at(deadline, self.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for a snapshot where {what}; the last: {last}")
                });
            let (event, data) = next.unwrap_or_else(|| panic!("the stream ended before {what}"));
            assert_eq!(event, "snapshot", "{data}");
            let snapshot: Value = serde_json::from_str(&data).unwrap();
            if condition(&snapshot) {
                return snapshot;
            }
            last = snapshot;
        }
    }
}

fn colony<'a>(snapshot: &'a Value, name: &str) -> Option<&'a Value> {
    snapshot["colonies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["colony"]["name"] == name)
}

fn colony_names(snapshot: &Value) -> Vec<String> {
    snapshot["colonies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["colony"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_and_names_no_other_host() {
    let (_db, _client, coordinators) = setup("coord_ui_assets", 1, &[]).await;
    let coordinator = &coordinators[0];
    let get = |path: &'static str| async move {
        let response = coordinator
            .http
            .get(coordinator.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        (headers, response.text().await.unwrap())
    };
    let (headers, page) = get("/ui").await;
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(page.contains("src=\"/ui/app.js\""), "{page}");
    assert!(page.contains("href=\"/ui/app.css\""), "{page}");
    let (script_headers, script) = get("/ui/app.js").await;
    assert_eq!(
        script_headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    let (style_headers, style) = get("/ui/app.css").await;
    assert_eq!(style_headers["content-type"], "text/css; charset=utf-8");

    for (name, text) in [
        ("index.html", &page),
        ("app.js", &script),
        ("app.css", &style),
    ] {
        // The one absolute URL allowed is the SVG namespace: a name, never fetched.
        let rest = text.replace("'http://www.w3.org/2000/svg'", "");
        for scheme in ["http://", "https://", "url(//", "src=\"//", "href=\"//"] {
            assert!(
                !rest.contains(scheme),
                "{name} names another host ({scheme})"
            );
        }
        for attribute in ["src=\"", "href=\""] {
            for value in rest.split(attribute).skip(1) {
                assert!(
                    value.starts_with('/') || value.starts_with('#'),
                    "{name}: {attribute}{}",
                    &value[..value.len().min(40)]
                );
            }
        }
        assert!(!rest.contains("@import"), "{name} imports a style sheet");
    }
    // Not a route: the JSON 404 of any unknown path.
    let missing = coordinator
        .http
        .get(coordinator.url("/ui/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn the_event_stream_takes_admin_tokens_only_and_scopes_them() {
    let (_db, client, coordinators) = setup("coord_ui_auth", 1, &[]).await;
    let coordinator = &coordinators[0];
    client
        .execute("SELECT colony_assign.add_colony('d')", &[])
        .await
        .unwrap();
    let executor = add_executor(&client, "c", "e", "t", None).await;
    let status = |token: Option<String>| async move {
        let mut request = coordinator.http.get(coordinator.url("/ui/events"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body)
    };
    let (code, body) = status(None).await;
    assert_eq!(
        (code, &body["error"]["code"]),
        (401, &json!("unauthorized"))
    );
    let (code, _) = status(Some("caa_not_a_token".into())).await;
    assert_eq!(code, 401);
    let (code, body) = status(Some(executor)).await;
    assert_eq!((code, &body["error"]["code"]), (403, &json!("forbidden")));

    let root = add_admin(&client, "root", None).await;
    let scoped = add_admin(&client, "scoped", Some(&["d"])).await;
    let mut all = Events::open(coordinator, &root).await;
    let first = all
        .until("both colonies are listed", |s| {
            colony_names(s) == ["c", "d"]
        })
        .await;
    assert!(first["replica"].is_string() && first["history"]["assigned"].is_array());
    let mut only_d = Events::open(coordinator, &scoped).await;
    only_d
        .until("only d is listed", |s| colony_names(s) == ["d"])
        .await;

    // A removed admin's stream says so and ends.
    client
        .execute("SELECT colony_assign.remove_admin('scoped')", &[])
        .await
        .unwrap();
    let deadline = Instant::now() + e2e::DEADLINE;
    loop {
        let next = tokio::time::timeout_at(deadline, only_d.next())
            .await
            .expect("the removed admin's stream ends");
        match next {
            Some((event, _)) if event == "revoked" => break,
            Some((event, _)) => assert_eq!(event, "snapshot"),
            None => panic!("the stream ended without saying why"),
        }
    }
    assert!(only_d.next().await.is_none(), "nothing after revoked");
}

#[tokio::test]
async fn a_snapshot_follows_submitted_assigned_and_failed_work() {
    let (_db, client, coordinators) = setup("coord_ui_live", 1, &[]).await;
    let coordinator = &coordinators[0];
    let token = add_executor(&client, "c", "e", "t", Some("edge")).await;
    let root = add_admin(&client, "root", None).await;
    let mut events = Events::open(coordinator, &root).await;
    events
        .until("colony c has executor e", |s| {
            colony(s, "c").is_some_and(|c| c["executors"][0]["name"] == "e")
        })
        .await;

    let id: i64 = client
        .query_one(
            "SELECT colony_assign.submit('c', '{\"funcname\": \"f\", \"conditions\": {\"executortype\": \"t\", \"locationname\": \"edge\"}}')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let snapshot = events
        .until("the process waits in the (t, edge) backlog", |s| {
            colony(s, "c").is_some_and(|c| {
                c["queues"].as_array().unwrap().iter().any(|q| {
                    q["executor_type"] == "t" && q["location"] == "edge" && q["waiting"] == 1
                })
            })
        })
        .await;
    let c = colony(&snapshot, "c").unwrap();
    assert_eq!(c["recent"][0]["id"], id);
    assert_eq!(c["stats"]["waiting"], 1);

    // Assigned through this replica: the snapshot shows it running, and the history counts it.
    let executor = HttpExecutor::new(coordinator, &token);
    let got = executor.assign("c", 5, 1).await;
    assert_eq!(got[0]["id"], id);
    events
        .until(
            "the process runs on e and the history counts the assign",
            |s| {
                let assigned: f64 = s["history"]["assigned"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .sum();
                colony(s, "c").is_some_and(|c| {
                    c["recent"][0]["state"] == 1
                        && c["recent"][0]["assigned_executor"] == "e"
                        && c["queues"].as_array().unwrap().is_empty()
                        && c["executors"][0]["running"] == 1
                }) && assigned >= 1.0
            },
        )
        .await;

    // A long-poll parked here and woken by a notification: the notifier reports how long the
    // wake took to reach its assign, and the latency history shows it.
    let parked = tokio::spawn({
        let executor = executor.clone();
        async move { executor.assign("c", 20, 1).await }
    });
    e2e::eventually("the long-poll is parked", || async {
        coordinator
            .metric("colony_parked_waiters", &[("kind", "location")])
            .await
            == 1.0
    })
    .await;
    let woken: i64 = client
        .query_one(
            "SELECT colony_assign.submit('c', '{\"funcname\": \"g\", \"conditions\": {\"executortype\": \"t\", \"locationname\": \"edge\"}}')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(parked.await.unwrap()[0]["id"], woken);
    events
        .until("the history has a wake latency", |s| {
            s["history"]["wake_p50_ms"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v.as_f64().is_some_and(|ms| ms >= 0.0))
        })
        .await;

    // Failed: listed among the failed processes.
    let failed = executor
        .http
        .post(coordinator.url(&format!("/v1/processes/{id}/fail")))
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .body(r#"{"errors": ["boom"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 204);
    events
        .until("the process is listed as failed", |s| {
            colony(s, "c").is_some_and(|c| c["failed"][0]["id"] == id && c["stats"]["failed"] == 1)
        })
        .await;
}

/// Graceful shutdown waits for open responses: an open dashboard must not hold it up.
#[tokio::test]
async fn an_open_dashboard_does_not_delay_shutdown() {
    let (_db, client, mut coordinators) = setup("coord_ui_shutdown", 1, &[]).await;
    let root = add_admin(&client, "root", None).await;
    let mut events = Events::open(&coordinators[0], &root).await;
    events
        .until("colony c is listed", |s| colony(s, "c").is_some())
        .await;
    let took = coordinators[0].terminate().await;
    assert!(
        took < std::time::Duration::from_secs(2),
        "shutdown took {took:?}"
    );
    let deadline = Instant::now() + e2e::DEADLINE;
    while let Some((event, _)) = tokio::time::timeout_at(deadline, events.next())
        .await
        .expect("the stream ends with the coordinator")
    {
        assert_eq!(event, "snapshot");
    }
}
