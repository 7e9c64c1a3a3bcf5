//! Failover and retry rules against scripted fake replicas (plain TCP servers speaking just
//! enough HTTP/1.1), so that every failure can be produced exactly. The e2e tests
//! (tests/client/) run the client against real coordinators.

use colony_client::{Client, Close, Error, Url};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as a fake replica received it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a fake replica does with a request.
enum Act {
    Answer(u16, String),
    /// Close the connection without answering (the answer is lost).
    Drop,
    /// Never answer, keeping the connection open.
    Hang,
}

type Script = Arc<dyn Fn(&Seen) -> Act + Send + Sync>;

struct Fake {
    url: Url,
    seen: Arc<Mutex<Vec<Seen>>>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Fake {
    async fn start(script: impl Fn(&Seen) -> Act + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(script);
        let acceptor = {
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let (socket, _) = listener.accept().await.unwrap();
                    tokio::spawn(serve(socket, script.clone(), seen.clone()));
                }
            })
        };
        Fake {
            url,
            seen,
            acceptor,
        }
    }

    /// Stops accepting connections (new ones are refused); open ones go on as scripted.
    async fn stop_accepting(&self) {
        self.acceptor.abort();
        while !self.acceptor.is_finished() {
            tokio::task::yield_now().await;
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests other than health checks.
    fn calls(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.target != "/healthz")
            .collect()
    }
}

async fn serve(mut socket: TcpStream, script: Script, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut buffer = Vec::new();
    loop {
        // Head.
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap().split(' ');
        let (method, target) = (
            request_line.next().unwrap().to_owned(),
            request_line.next().unwrap().to_owned(),
        );
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buffer[head_end..head_end + length]).to_string();
        buffer.drain(..head_end + length);
        let request = Seen {
            method,
            target,
            headers,
            body,
        };
        seen.lock().unwrap().push(request.clone());
        match script(&request) {
            Act::Answer(status, body) => {
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if socket.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
            Act::Drop => return,
            Act::Hang => std::future::pending::<()>().await,
        }
    }
}

fn healthy_or(seen: &Seen, act: impl FnOnce() -> Act) -> Act {
    if seen.target == "/healthz" {
        Act::Answer(200, r#"{"status":"ok"}"#.into())
    } else {
        act()
    }
}

fn dead_url() -> Url {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Url::parse(&format!("http://127.0.0.1:{port}")).unwrap()
}

fn client(replicas: &[&Url]) -> Client {
    Client::builder(replicas.iter().map(|u| (*u).clone()).collect(), "token")
        .start_at(0)
        .build()
        .unwrap()
}

fn conflict(message: &str) -> Act {
    Act::Answer(
        409,
        json!({"error": {"code": "conflict", "message": message, "sqlstate": "55000"}}).to_string(),
    )
}

const PROCESS: &str =
    r#"[{"id": 1, "colony": "c", "state": 1, "executor_type": "t", "spec": {"funcname": "f"}}]"#;

#[tokio::test]
async fn a_refused_connection_moves_the_call_and_the_client_stays_on_the_good_replica() {
    let good = Fake::start(|s| healthy_or(s, || Act::Answer(201, r#"{"ids": [7]}"#.into()))).await;
    let dead = dead_url();
    let c = client(&[&dead, &good.url]);
    assert_eq!(c.submit("c", &json!({})).await.unwrap(), 7);
    assert_eq!(c.current_replica(), good.url);
    assert_eq!(c.submit("c", &json!({})).await.unwrap(), 7);
    let calls = good.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].target, "/v1/colonies/c/processes");
    assert_eq!(calls[0].header("authorization"), Some("Bearer token"));
}

#[tokio::test]
async fn a_submit_whose_answer_was_lost_is_sent_again_with_the_same_key() {
    let lossy = Fake::start(|s| healthy_or(s, || Act::Drop)).await;
    let good =
        Fake::start(|s| healthy_or(s, || Act::Answer(201, r#"{"ids": [1, 2]}"#.into()))).await;
    let c = client(&[&lossy.url, &good.url]);
    let ids = c
        .submit_many("c", &[json!({"funcname": "a"}), json!({"funcname": "b"})])
        .await
        .unwrap();
    assert_eq!(ids, vec![1, 2]);
    let first = lossy.calls()[0].clone();
    let retry = good.calls()[0].clone();
    let key = first
        .header("idempotency-key")
        .expect("a key on the first attempt");
    assert_eq!(
        retry.header("idempotency-key"),
        Some(key),
        "the same key on the retry"
    );
    assert_eq!(first.body, retry.body);
    // The next logical submit has a key of its own.
    c.submit_many("c", &[json!({}), json!({})]).await.unwrap();
    assert_ne!(good.calls()[1].header("idempotency-key"), Some(key));
    // A caller's own key is sent as given.
    c.submit_many_with_key("c", &[json!({}), json!({})], "mine")
        .await
        .unwrap();
    assert_eq!(good.calls()[2].header("idempotency-key"), Some("mine"));
}

#[tokio::test]
async fn a_retried_close_that_finds_its_process_success_succeeded() {
    let lossy = Fake::start(|s| healthy_or(s, || Act::Drop)).await;
    let applied = Fake::start(|s| {
        healthy_or(s, || {
            if s.target.ends_with("/fail") {
                conflict("process 5 is not running (it is FAILED)")
            } else {
                conflict("process 5 is not running (it is SUCCESS)")
            }
        })
    })
    .await;
    let c = client(&[&lossy.url, &applied.url]);
    c.close(5, Some(json!({"x": 1}))).await.unwrap();
    assert_eq!(applied.calls()[0].body, r#"{"output":{"x":1}}"#);
    // The same 409 with no lost answer before it is an error: the client is now on `applied`.
    let twice = c.close(5, None).await.unwrap_err();
    assert_eq!(twice.status(), Some(409));
    assert_eq!(twice.sqlstate(), Some("55000"));

    client(&[&lossy.url, &applied.url])
        .fail(5, &["boom"])
        .await
        .unwrap();
    // A retried close that finds the process in another state is not a success.
    let cancelled =
        Fake::start(|s| healthy_or(s, || conflict("process 5 is not running (it is CANCELLED)")))
            .await;
    let e = client(&[&lossy.url, &cancelled.url])
        .close(5, None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409));
}

#[tokio::test]
async fn close_many_after_a_lost_answer_counts_items_already_success_as_closed() {
    let lossy = Fake::start(|s| healthy_or(s, || Act::Drop)).await;
    let good = Fake::start(|s| {
        healthy_or(s, || {
            Act::Answer(
                200,
                json!({"results": [
                    {"id": 1, "closed": false, "error": "not running (it is SUCCESS)"},
                    {"id": 2, "closed": false, "error": "not running (it is CANCELLED)"},
                    {"id": 3, "closed": true}
                ]})
                .to_string(),
            )
        })
    })
    .await;
    let closes: Vec<Close> = (1..=3)
        .map(|id| Close {
            id,
            output: Some(json!(id)),
        })
        .collect();
    let results = client(&[&lossy.url, &good.url])
        .close_many(&closes)
        .await
        .unwrap();
    assert_eq!(
        results.iter().map(|r| r.closed).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(results[0].error, None);
    // Without a lost answer, the coordinator's verdict stands.
    let results = client(&[&good.url]).close_many(&closes).await.unwrap();
    assert_eq!(
        results.iter().map(|r| r.closed).collect::<Vec<_>>(),
        [false, false, true]
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let refusing = Fake::start(|s| {
        healthy_or(s, || {
            Act::Answer(
                400,
                r#"{"error": {"code": "bad_request", "message": "no", "sqlstate": "22023"}}"#
                    .into(),
            )
        })
    })
    .await;
    let other = Fake::start(|s| healthy_or(s, || Act::Answer(201, r#"{"ids": [1]}"#.into()))).await;
    let c = client(&[&refusing.url, &other.url]);
    let e = c.submit("c", &json!({})).await.unwrap_err();
    assert!(
        matches!(&e, Error::Api { status: 400, code, sqlstate: Some(s), .. } if code == "bad_request" && s == "22023"),
        "{e:?}"
    );
    assert_eq!(refusing.calls().len(), 1);
    assert!(other.seen().is_empty());
    // 500 is an answer too.
    let broken = Fake::start(|s| healthy_or(s, || Act::Answer(500, "oops".into()))).await;
    let c = client(&[&broken.url, &other.url]);
    assert_eq!(c.stats("c").await.unwrap_err().status(), Some(500));
    assert!(other.seen().is_empty());
}

#[tokio::test]
async fn a_503_moves_every_call_but_a_lost_answer_ends_one_that_must_not_run_twice() {
    let unavailable = Fake::start(|s| {
        healthy_or(s, || {
            Act::Answer(
                503,
                r#"{"error": {"code": "unavailable", "message": "down"}}"#.into(),
            )
        })
    })
    .await;
    let good = Fake::start(|s| healthy_or(s, || Act::Answer(204, String::new()))).await;
    client(&[&unavailable.url, &good.url])
        .log(1, "hello")
        .await
        .unwrap();
    assert_eq!(good.calls()[0].body, r#"{"message":"hello"}"#);

    let lossy = Fake::start(|s| healthy_or(s, || Act::Drop)).await;
    let e = client(&[&lossy.url, &good.url])
        .log(1, "again")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::OutcomeUnknown(_)), "{e:?}");
    let gateway = Fake::start(|s| healthy_or(s, || Act::Answer(502, "bad gateway".into()))).await;
    let e = client(&[&gateway.url, &good.url])
        .submit_workflow("c", &[json!({})])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::OutcomeUnknown(_)), "{e:?}");
    assert_eq!(good.calls().len(), 1, "neither was sent again");
    // The same 502 for an idempotent call moves on.
    client(&[&gateway.url, &good.url])
        .heartbeat()
        .await
        .unwrap();
    assert_eq!(good.calls().len(), 2);
}

#[tokio::test]
async fn a_waiting_long_poll_leaves_a_replica_that_stops_accepting_connections_within_2_s() {
    let silent = Fake::start(|s| healthy_or(s, || Act::Hang)).await;
    let good = Fake::start(|s| healthy_or(s, || Act::Answer(200, PROCESS.into()))).await;
    let c = client(&[&silent.url, &good.url]);
    let poll = tokio::spawn({
        let c = c.clone();
        async move {
            let got = c.assign("c", Duration::from_secs(20), 1).await;
            (got, Instant::now())
        }
    });
    // Once the long-poll waits on `silent`, it stops accepting connections (a partition, or a
    // process that died behind a proxy that keeps the client's connection open).
    while silent.calls().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cut = Instant::now();
    silent.stop_accepting().await;
    let (got, at) = poll.await.unwrap();
    assert_eq!(got.unwrap()[0].id, 1);
    let took = at - cut;
    eprintln!("the long-poll moved and was answered {took:?} after the replica went silent");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // It went on for the time that was left.
    let target = &good.calls()[0].target;
    let timeout: u64 = target
        .split("timeout=")
        .nth(1)
        .and_then(|t| t.split('&').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((17..20).contains(&timeout), "{target}");
    assert!(target.ends_with("&max=1"), "{target}");
    assert_eq!(silent.calls()[0].method, "POST");
}

#[tokio::test]
async fn health_checks_choose_the_next_replica() {
    let lossy = Fake::start(|s| healthy_or(s, || Act::Drop)).await;
    let degraded = Fake::start(|s| {
        if s.target == "/healthz" {
            Act::Answer(503, r#"{"status": "degraded"}"#.into())
        } else {
            Act::Answer(
                200,
                r#"{"paused": false, "strict": false, "executors": 1, "waiting": 0,
                "blocked": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}"#
                    .into(),
            )
        }
    })
    .await;
    let healthy = Fake::start(|s| {
        healthy_or(s, || {
            Act::Answer(
                200,
                r#"{"paused": true, "strict": false, "executors": 1, "waiting": 0,
                "blocked": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}"#
                    .into(),
            )
        })
    })
    .await;
    let c = client(&[&lossy.url, &degraded.url, &healthy.url]);
    assert!(
        c.stats("c").await.unwrap().paused,
        "served by the healthy one"
    );
    assert_eq!(c.current_replica(), healthy.url);
    assert!(degraded.calls().is_empty());
    assert_eq!(degraded.seen().len(), 1, "asked for its health only");
}

#[tokio::test]
async fn a_call_gives_up_when_no_replica_answers_within_its_budget() {
    let c = Client::builder(vec![dead_url(), dead_url()], "token")
        .retry_for(Duration::from_millis(400))
        .build()
        .unwrap();
    let started = Instant::now();
    let e = c.heartbeat().await.unwrap_err();
    assert!(
        matches!(&e, Error::Unavailable { maybe_applied: false, last } if last.contains("127.0.0.1")),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_replica_that_comes_back_is_used_again() {
    // Both fail once (dropped answers), then both serve: the call goes round, pauses, and
    // succeeds on its second round.
    let flaky = || {
        let dropped = Arc::new(Mutex::new(false));
        move |s: &Seen| {
            healthy_or(s, || {
                let mut dropped = dropped.lock().unwrap();
                if *dropped {
                    Act::Answer(204, String::new())
                } else {
                    *dropped = true;
                    Act::Drop
                }
            })
        }
    };
    let a = Fake::start(flaky()).await;
    let b = Fake::start(flaky()).await;
    let c = client(&[&a.url, &b.url]);
    c.heartbeat().await.unwrap();
    assert_eq!(a.calls().len() + b.calls().len(), 3);
}
