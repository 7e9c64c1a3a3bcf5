//! Resource bounds: parked long-polls per executor, metric series of channels no longer
//! listened on, and clients that send their headers or body too slowly.

use super::{add_executor, count, setup};
use e2e::{DEADLINE, HttpExecutor, eventually, spec};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Slack for a busy machine on top of a timeout the coordinator enforces.
const MARGIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn long_polls_beyond_the_per_executor_cap_get_429_and_other_executors_are_not_affected() {
    let (_db, client, coordinators) =
        setup("coord_parked_cap", 1, &["--max-parked-per-executor", "3"]).await;
    let coordinator = &coordinators[0];
    let token = add_executor(&client, "c", "e", "t", None).await;
    let other = add_executor(&client, "c", "f", "t", None).await;
    let mut parked = Vec::new();
    for _ in 0..3 {
        let executor = HttpExecutor::new(coordinator, &token);
        parked.push(tokio::spawn(
            async move { executor.assign("c", 30, 1).await },
        ));
    }
    eventually("three long-polls of e parked", || async {
        coordinator
            .metric("colony_parked_waiters", &[("kind", "name")])
            .await
            == 3.0
    })
    .await;

    let started = Instant::now();
    let response = coordinator
        .http
        .post(coordinator.url("/v1/colonies/c/assign?timeout=30"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(
        started.elapsed() < MARGIN,
        "refused at once, not parked until its timeout"
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "the project's JSON error body"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("3 long-polls")),
        "{body}"
    );
    assert_eq!(
        coordinator
            .metric("colony_longpolls_total", &[("result", "rejected")])
            .await,
        1.0
    );
    assert_eq!(
        coordinator
            .metric("colony_parked_waiters", &[("kind", "name")])
            .await,
        3.0,
        "the refused long-poll never parked"
    );

    // Another executor of the same type and colony still parks (and times out with 204).
    let f = HttpExecutor::new(coordinator, &other);
    assert!(f.assign("c", 1, 1).await.is_empty());

    // Three processes answer the three parked long-polls; then e may park again.
    for _ in 0..3 {
        client
            .query_one(
                "SELECT colony_assign.submit('c', $1)",
                &[&spec("t", json!({}), json!({}))],
            )
            .await
            .unwrap();
    }
    for poll in parked {
        assert_eq!(poll.await.unwrap().len(), 1);
    }
    let again = HttpExecutor::new(coordinator, &token);
    assert!(
        again.assign("c", 1, 1).await.is_empty(),
        "accepted (204 at its timeout), not 429"
    );
    assert_eq!(
        coordinator
            .metric("colony_longpolls_total", &[("result", "rejected")])
            .await,
        1.0
    );
}

/// The series `colony_parked_waiters_by_key{channel="<channel>"}`, if /metrics has it.
async fn by_key_series(coordinator: &e2e::Coordinator, channel: &str) -> Option<f64> {
    let text = coordinator
        .http
        .get(coordinator.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("colony_parked_waiters_by_key{{channel=\"{channel}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.parse().unwrap())
}

#[tokio::test]
async fn the_series_of_an_unlistened_channel_leaves_the_metrics() {
    let (_db, client, coordinators) =
        setup("coord_series_unlisten", 1, &["--unlisten-after-s", "1"]).await;
    let coordinator = &coordinators[0];
    let at_l = add_executor(&client, "c", "e", "t", Some("L")).await;
    let at_m = add_executor(&client, "c", "g", "t", Some("M")).await;
    let channel = |location: &str| {
        colony_proto::Key::Location {
            colony: "c",
            executor_type: "t",
            location,
        }
        .channel()
    };
    let (l, m) = (channel("L"), channel("M"));
    let broadcast = colony_proto::Key::Broadcast {
        colony: "c",
        executor_type: "t",
    }
    .channel();

    let leaving = {
        let executor = HttpExecutor::new(coordinator, &at_l);
        tokio::spawn(async move { executor.assign("c", 60, 1).await })
    };
    let staying = {
        let executor = HttpExecutor::new(coordinator, &at_m);
        tokio::spawn(async move { executor.assign("c", 60, 1).await })
    };
    eventually("both parked, every key listened on", || async {
        by_key_series(coordinator, &l).await == Some(1.0)
            && by_key_series(coordinator, &m).await == Some(1.0)
            && by_key_series(coordinator, &broadcast).await == Some(2.0)
            // Location, broadcast and name keys: 2 + 1 + 2.
            && coordinator.metric("colony_listen_channels", &[]).await == 5.0
    })
    .await;

    leaving.abort(); // e's client goes away; nobody waits on L any more
    eventually("L unlistened and its series gone", || async {
        coordinator.metric("colony_listen_channels", &[]).await == 3.0
            && by_key_series(coordinator, &l).await.is_none()
    })
    .await;
    assert_eq!(
        by_key_series(coordinator, &m).await,
        Some(1.0),
        "a key still waited on keeps its series"
    );
    assert_eq!(by_key_series(coordinator, &broadcast).await, Some(1.0));
    assert!(!staying.is_finished(), "g is still parked");
    staying.abort();
}

/// Reads until the server closes the connection (EOF or reset); returns what arrived and how
/// long after `started` it closed. `started` is taken before the client sends anything, so the
/// time is never shorter than what the server measured.
async fn read_until_closed(tcp: &mut TcpStream, started: Instant) -> (Vec<u8>, Duration) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(DEADLINE, tcp.read(&mut buffer))
            .await
            .expect("the server closes the connection within the deadline");
        match read {
            Ok(0) | Err(_) => return (received, started.elapsed()),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

fn address(coordinator: &e2e::Coordinator) -> String {
    coordinator.base.strip_prefix("http://").unwrap().to_owned()
}

#[tokio::test]
async fn a_client_that_sends_its_headers_slowly_is_disconnected() {
    let (_db, _client, coordinators) = setup(
        "coord_slow_headers",
        1,
        &["--header-read-timeout-ms", "1000"],
    )
    .await;
    let address = address(&coordinators[0]);
    let partials = [
        "",
        "POST /v1/colonies/c/assi",
        "POST /v1/colonies/c/assign?timeout=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bea",
    ];
    let clients = partials.map(|partial| {
        let address = address.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut tcp = TcpStream::connect(&address).await.unwrap();
            tcp.write_all(partial.as_bytes()).await.unwrap();
            let (received, took) = read_until_closed(&mut tcp, started).await;
            (partial, received, took)
        })
    });
    for client in clients {
        let (partial, received, took) = client.await.unwrap();
        assert!(
            took >= Duration::from_millis(900),
            "{partial:?}: closed after {took:?}, before the timeout"
        );
        assert!(
            took < Duration::from_secs(1) + MARGIN,
            "{partial:?}: closed only after {took:?}"
        );
        let received = String::from_utf8_lossy(&received);
        assert!(
            received.is_empty() || received.starts_with("HTTP/1.1 408"),
            "{partial:?}: {received}"
        );
    }
    // The limit is on slow clients only: a whole request is served as before.
    let health = coordinators[0]
        .http
        .get(coordinators[0].url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_client_that_sends_its_body_slowly_is_cut_off() {
    let (_db, client, coordinators) =
        setup("coord_slow_body", 1, &["--body-read-timeout-ms", "1000"]).await;
    let address = address(&coordinators[0]);
    let token = add_executor(&client, "c", "e", "t", None).await;
    let body = format!(
        "{:<100}",
        r#"{"funcname": "work", "conditions": {"executortype": "t"}}"#
    );
    let head = format!(
        "POST /v1/colonies/c/processes HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );

    // Part of the body, then nothing: answered 408 (JSON) and closed.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(&address).await.unwrap();
    stalled
        .write_all(format!("{head}{}", &body[..20]).as_bytes())
        .await
        .unwrap();
    let (received, took) = read_until_closed(&mut stalled, started).await;
    assert!(took >= Duration::from_millis(900), "after {took:?}");
    assert!(
        took < Duration::from_secs(1) + MARGIN,
        "only after {took:?}"
    );
    let received = String::from_utf8_lossy(&received);
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(
        received.to_ascii_lowercase().contains("connection: close"),
        "{received}"
    );
    let json_body: Value = serde_json::from_str(received.split("\r\n\r\n").nth(1).unwrap())
        .unwrap_or_else(|e| panic!("JSON error body ({e}): {received}"));
    assert_eq!(json_body["error"]["code"], "request_timeout");

    // A byte every 100 ms: each arrives well within the timeout, the whole never does. Cut off
    // at the timeout all the same (408, or closed with the rest of the body still coming).
    let started = Instant::now();
    let trickle = TcpStream::connect(&address).await.unwrap();
    let (mut reader, mut writer) = trickle.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let sender = tokio::spawn(async move {
        for byte in body.bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            // The slow client's own pace.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(DEADLINE, reader.read(&mut buffer))
            .await
            .expect("answered or closed within the deadline");
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
    let took = started.elapsed();
    sender.abort();
    assert!(took >= Duration::from_millis(900), "after {took:?}");
    // Well before the 10 s the whole body would take.
    assert!(
        took < Duration::from_secs(1) + MARGIN,
        "only after {took:?}"
    );
    let received = String::from_utf8_lossy(&received);
    assert!(
        received.is_empty() || received.starts_with("HTTP/1.1 408"),
        "{received}"
    );

    assert_eq!(
        count(&client, "SELECT count(*) FROM colony_assign.processes").await,
        0,
        "nothing was submitted"
    );
}

#[tokio::test]
async fn the_read_timeouts_do_not_cut_a_long_poll() {
    let (_db, client, coordinators) = setup(
        "coord_timeouts_longpoll",
        1,
        &[
            "--header-read-timeout-ms",
            "1000",
            "--body-read-timeout-ms",
            "1000",
        ],
    )
    .await;
    let coordinator = &coordinators[0];
    let token = add_executor(&client, "c", "e", "t", None).await;

    let executor = HttpExecutor::new(coordinator, &token);
    let started = Instant::now();
    assert!(executor.assign("c", 3, 1).await.is_empty(), "204");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3), "answered after {took:?}");
    assert!(took < Duration::from_secs(3) + MARGIN, "after {took:?}");

    // Even one that announces a body it never sends: the long-poll does not read it.
    let started = Instant::now();
    let mut tcp = TcpStream::connect(address(coordinator)).await.unwrap();
    tcp.write_all(
        format!(
            "POST /v1/colonies/c/assign?timeout=3 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: 10\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buffer = [0u8; 4096];
    let n = tokio::time::timeout(DEADLINE, tcp.read(&mut buffer))
        .await
        .expect("answered within the deadline")
        .unwrap();
    let took = started.elapsed();
    let received = String::from_utf8_lossy(&buffer[..n]);
    assert!(received.starts_with("HTTP/1.1 204"), "{received}");
    assert!(took >= Duration::from_secs(3), "answered after {took:?}");
    assert!(took < Duration::from_secs(3) + MARGIN, "after {took:?}");
}
