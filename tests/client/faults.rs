//! Failover between real replicas that fail in real ways: killed (refused connections), a
//! closed port, a database that is down (503), a database that refuses new sessions (a
//! degraded `/healthz`), frozen (SIGSTOP), frozen with a full listen queue (it stops accepting
//! connections), and replicas whose own answers are final (4xx, 500).

use super::{
    add_executor, address, count, freeze, kill, replica_name, setup, setup_with, url, urls,
};
use colony_client::{Client, Error, Health};
use e2e::{Coordinator, PrivateCluster, TestDb, cluster_config, connect_with, eventually, spec};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A URL nothing listens on (a port just freed).
fn closed_port() -> colony_client::Url {
    super::api::dead_url()
}

/// `/healthz` of a coordinator: its status and body.
async fn healthz(coordinator: &Coordinator) -> (u16, Value) {
    let response = coordinator
        .http
        .get(coordinator.url("/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn killed_and_closed_replicas_are_passed_over_and_calls_stay_on_the_one_that_answered() {
    let (_db, sql, mut coordinators) = setup("client_refused", 2).await;
    let (killed, live) = (url(&coordinators[0]), url(&coordinators[1]));
    kill(coordinators.remove(0)).await;
    let closed = closed_port();
    let client = Client::builder(
        vec![closed.clone(), killed.clone(), live.clone()],
        add_executor(&sql, "s", "s").await,
    )
    .start_at(0)
    .build()
    .unwrap();
    let first = client
        .submit("c", &spec("t", json!({}), json!({})))
        .await
        .unwrap();
    assert_eq!(client.current_replica(), live);
    let second = client
        .submit("c", &spec("t", json!({}), json!({})))
        .await
        .unwrap();
    assert_eq!(client.current_replica(), live);
    let stored: Vec<i64> = sql
        .query_one(
            "SELECT array_agg(id ORDER BY id) FROM colony_assign.processes",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, [first, second]);
    assert_eq!(
        client.health().await,
        vec![
            (closed, Health::Dead),
            (killed, Health::Dead),
            (live, Health::Healthy)
        ]
    );
}

#[tokio::test]
async fn a_replica_whose_database_is_down_answers_503_and_every_call_moves_on() {
    // Replica 0 runs on a cluster of the test's own, which is then stopped; replica 1 on the
    // shared test database.
    let cluster = PrivateCluster::start("client_503").await;
    let down = Coordinator::start_with_conninfo(
        &cluster.conninfo(),
        "client_503-down",
        &["--reap", "off"],
    )
    .await;
    let (_db, sql, coordinators) = setup("client_503", 1).await;
    cluster.stop();
    let (status, body) = healthz(&down).await;
    assert_eq!((status, &body["database"]), (503, &json!("unreachable")));

    let token = add_executor(&sql, "w", "t").await;
    let replicas = vec![url(&down), url(&coordinators[0])];
    let client = || {
        Client::builder(replicas.clone(), token.clone())
            .start_at(0)
            .build()
            .unwrap()
    };
    sql.execute(
        "SELECT colony_assign.submit('c', $1)",
        &[&spec("t", json!({}), json!({}))],
    )
    .await
    .unwrap();
    let id = client()
        .assign("c", Duration::from_secs(5), 1)
        .await
        .unwrap()[0]
        .id;
    // A 503 changed nothing, so even calls that must not run twice move on.
    let c = client();
    c.log(id, "hello").await.unwrap();
    assert_eq!(c.current_replica(), replicas[1]);
    let logs = c.logs(id).await.unwrap();
    assert_eq!(
        logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["hello"]
    );
    client()
        .submit_workflow("c", &[spec("t", json!({}), json!({"nodename": "a"}))])
        .await
        .unwrap();
    assert_eq!(
        count(&sql, "SELECT count(*) FROM colony_assign.workflows").await,
        1
    );
}

#[tokio::test]
async fn health_checks_choose_the_healthy_replica_over_a_degraded_one() {
    let (_db, sql, mut coordinators) = setup("client_health", 2).await;
    sql.execute("SELECT colony_assign.pause('c')", &[])
        .await
        .unwrap();
    // The degraded replica runs on a database of its own. It keeps its open sessions but gets
    // no new ones: its LISTEN connection, once terminated, cannot come back, so its /healthz
    // answers 503 while it could still serve requests (with tokens of its own database).
    let other = TestDb::new("client_health_degraded").await;
    let degraded = Coordinator::start(&other, "client_health-degraded", &["--reap", "off"]).await;
    let (admin, _) = connect_with(&cluster_config()).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS false",
            other.name
        ))
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'colony-coordinator client_health-degraded listen'",
            &[],
        )
        .await
        .unwrap();
    eventually("the degraded replica's /healthz answers 503", || async {
        let (status, body) = healthz(&degraded).await;
        status == 503 && body["database"] == "ok" && body["listener"] == "disconnected"
    })
    .await;

    let (dead, healthy) = (url(&coordinators[0]), url(&coordinators[1]));
    kill(coordinators.remove(0)).await;
    let client = Client::builder(
        vec![dead.clone(), url(&degraded), healthy.clone()],
        add_executor(&sql, "w", "t").await,
    )
    .start_at(0)
    // Long enough that a slow answer from the loaded test machine is not taken for a dead
    // replica: what is tested is the choice, not the timeout.
    .health_timeout(Duration::from_secs(5))
    .build()
    .unwrap();
    // The dead replica refuses; of the two left, the healthy one is chosen. (The degraded one
    // does not know the token: had the call gone there, it would have been refused, 401.)
    let stats = client.stats("c").await.unwrap();
    assert!(stats.paused, "served from the healthy replica's database");
    assert_eq!(client.current_replica(), healthy);
    assert_eq!(
        client.health().await,
        vec![
            (dead, Health::Dead),
            (url(&degraded), Health::Degraded),
            (healthy, Health::Healthy)
        ]
    );
    drop(degraded);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true",
            other.name
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn client_errors_and_internal_errors_are_answers_and_never_retried() {
    // Replica 0 refuses what replica 1 would serve: bodies over 4 KiB (413) and long-polls over
    // 1 s (400). Had the client retried on replica 1, the work would have been done there.
    let test = "client_refusals";
    let (db, sql, coordinators) = setup_with(
        test,
        &[&["--max-body-bytes", "4096", "--max-timeout-s", "1"], &[]],
    )
    .await;
    let replicas = urls(&coordinators);
    let client = Client::builder(replicas.clone(), add_executor(&sql, "w", "t").await)
        .start_at(0)
        .build()
        .unwrap();
    let big = spec("t", json!({}), json!({"args": ["x".repeat(8192)]}));
    let e = client.submit("c", &big).await.unwrap_err();
    assert_eq!(e.status(), Some(413), "{e:?}");
    assert_eq!(
        count(&sql, "SELECT count(*) FROM colony_assign.processes").await,
        0,
        "not submitted through the other replica"
    );
    let id: i64 = sql
        .query_one(
            "SELECT colony_assign.submit('c', $1)",
            &[&spec("t", json!({}), json!({}))],
        )
        .await
        .unwrap()
        .get(0);
    let e = client
        .assign("c", Duration::from_secs(5), 1)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e:?}");
    let state: i32 = sql
        .query_one(
            "SELECT state FROM colony_assign.processes WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        state, 0,
        "still WAITING: not assigned through the other replica"
    );
    // Invalid input: the same answer on every replica, with the extension's SQLSTATE.
    let e = client
        .submit("c", &spec("t", json!({}), json!({"nosuchkey": 1})))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Api { status: 400, code, sqlstate: Some(s), .. } if code == "bad_request" && s == "22023"),
        "{e:?}"
    );
    assert_eq!(client.current_replica(), replicas[0], "the client stayed");

    // A 500: a replica whose database sessions are read-only (as on a standby) fails every
    // write with SQLSTATE 25006, which the coordinator answers 500.
    let read_only = Coordinator::start_with_conninfo(
        &format!(
            "{} options='-c default_transaction_read_only=on'",
            db.conninfo()
        ),
        &replica_name(test, 9),
        &["--reap", "off"],
    )
    .await;
    let client = Client::builder(
        vec![url(&read_only), replicas[1].clone()],
        add_executor(&sql, "s", "s").await,
    )
    .start_at(0)
    .build()
    .unwrap();
    let before = count(&sql, "SELECT count(*) FROM colony_assign.processes").await;
    let e = client
        .submit("c", &spec("t", json!({}), json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Api { status: 500, code, .. } if code == "internal"),
        "{e:?}"
    );
    assert_eq!(
        count(&sql, "SELECT count(*) FROM colony_assign.processes").await,
        before,
        "not submitted through the other replica"
    );
    assert_eq!(client.current_replica(), url(&read_only));
}

#[tokio::test]
async fn with_every_replica_down_a_call_ends_unavailable_after_its_budget() {
    let (_db, sql, mut coordinators) = setup("client_unavailable", 4).await;
    let token = add_executor(&sql, "w", "t").await;
    let replicas = urls(&coordinators);
    let budget = Duration::from_secs(1);

    // Killed: every attempt is refused, so nothing can have been applied.
    let killed = replicas[..2].to_vec();
    kill(coordinators.remove(0)).await;
    kill(coordinators.remove(0)).await;
    let client = Client::builder(killed, token.clone())
        .retry_for(budget)
        .build()
        .unwrap();
    let started = Instant::now();
    let e = client.heartbeat().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&e, Error::Unavailable { maybe_applied: false, last } if last.contains("127.0.0.1")),
        "{e:?}"
    );
    assert!(took < budget + Duration::from_secs(3), "{took:?}");

    // Frozen: every attempt is sent and its answer lost, so one may have been applied.
    freeze(&coordinators[0]).await;
    freeze(&coordinators[1]).await;
    let client = Client::builder(replicas[2..].to_vec(), token)
        .request_timeout(Duration::from_millis(500))
        .retry_for(budget)
        .build()
        .unwrap();
    let started = Instant::now();
    let e = client.heartbeat().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            &e,
            Error::Unavailable {
                maybe_applied: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(took < budget + Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_whose_database_is_down_answer_503_until_it_comes_back() {
    let cluster = PrivateCluster::start("client_comeback").await;
    let (admin, _) = connect_with(&cluster.config()).await;
    admin
        .execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    let token: String = admin
        .query_one("SELECT colony_assign.add_executor('c', 'w', 't')", &[])
        .await
        .unwrap()
        .get(0);
    let mut coordinators = Vec::new();
    for i in 0..2 {
        coordinators.push(
            Coordinator::start_with_conninfo(
                &cluster.conninfo(),
                &replica_name("client_comeback", i),
                // No reaper: the only database queries are the requests' (counted below).
                &["--reap", "off"],
            )
            .await,
        );
    }
    let replicas = urls(&coordinators);
    cluster.stop();

    // Every replica answers 503: nothing was applied.
    let e = Client::builder(replicas.clone(), token.clone())
        .retry_for(Duration::from_secs(1))
        .build()
        .unwrap()
        .heartbeat()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Unavailable { maybe_applied: false, last } if last.contains("503")),
        "{e:?}"
    );

    // A call with the default budget goes round the replicas until the database is back.
    let queries = || async {
        let mut counts = Vec::new();
        for c in &coordinators {
            counts.push(c.metric("colony_db_queries_total", &[]).await);
        }
        counts
    };
    let before = queries().await;
    let client = Client::builder(replicas, token)
        .start_at(0)
        .build()
        .unwrap();
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.heartbeat().await }
    });
    eventually("both replicas tried (and answered 503)", || async {
        queries()
            .await
            .iter()
            .zip(&before)
            .all(|(now, then)| now > then)
    })
    .await;
    assert!(!call.is_finished());
    cluster.start_again();
    tokio::time::timeout(e2e::DEADLINE, call)
        .await
        .expect("the call ended")
        .unwrap()
        .expect("the call succeeded once the database was back");
}

/// Opens connections to `address` (a frozen process's port) until one is not accepted within
/// the client's connect timeout: the listen queue is full, and the kernel drops new SYNs. The
/// connections (held open), and when the first unaccepted attempt started.
async fn fill_listen_queue(address: &str) -> (Vec<TcpStream>, Instant) {
    let mut held = Vec::new();
    loop {
        let started = Instant::now();
        match tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(address)).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(e)) => panic!("connect to the frozen replica: {e}"),
            Err(_) => return (held, started),
        }
        assert!(held.len() < 10_000, "the listen queue never filled");
    }
}

#[tokio::test]
async fn a_waiting_long_poll_leaves_a_replica_that_stops_accepting_connections_within_2_s() {
    // Replica 1 accepts long-polls of at most 9 s: the poll of 10 s must go on there for the
    // time that is left, not start again.
    let test = "client_longpoll_moves";
    let (_db, sql, mut coordinators) = setup_with(test, &[&[], &["--max-timeout-s", "9"]]).await;
    let client = Client::builder(urls(&coordinators), add_executor(&sql, "w", "t").await)
        .start_at(0)
        .build()
        .unwrap();
    let poll = tokio::spawn({
        let client = client.clone();
        async move {
            let got = client.assign("c", Duration::from_secs(10), 1).await;
            (got, Instant::now())
        }
    });
    let stuck = coordinators.remove(0);
    eventually("the long-poll is parked on replica 0", || async {
        stuck.metric("colony_parked_waiters", &[]).await > 0.0
    })
    .await;
    // Replica 0 freezes with the long-poll parked, and work arrives that it cannot hand out.
    freeze(&stuck).await;
    let id: i64 = sql
        .query_one(
            "SELECT colony_assign.submit('c', $1)",
            &[&spec("t", json!({}), json!({}))],
        )
        .await
        .unwrap()
        .get(0);
    // Then it stops accepting connections: its listen queue is full (its kernel accepted
    // connections that nobody takes). The long-poll's own connection stays open and silent.
    let (held, cut) = fill_listen_queue(&address(&stuck)).await;
    let (got, at) = poll.await.unwrap();
    let got = got.expect("the long-poll was served by replica 1");
    assert_eq!(got.iter().map(|p| p.id).collect::<Vec<_>>(), [id]);
    assert_eq!(client.current_replica(), url(&coordinators[0]));
    let took = at.saturating_duration_since(cut);
    eprintln!(
        "the long-poll moved and was answered {took:?} after replica 0 stopped accepting \
         connections ({} queued)",
        held.len()
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(stuck);
    drop(held);
}
