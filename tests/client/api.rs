//! Every call of the client against one real coordinator: what it sends is what the
//! coordinator serves, and what it reads is what the coordinator answers.

use super::{add_executor, setup, urls};
use colony_client::{Client, Close, Closed, Error, State, Url};
use e2e::spec;
use serde_json::json;
use std::time::{Duration, Instant};

/// A URL nothing listens on (a port just freed).
pub fn dead_url() -> Url {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Url::parse(&format!("http://127.0.0.1:{port}")).unwrap()
}

#[tokio::test]
async fn every_call_round_trips_through_a_real_coordinator() {
    let (_db, sql, coordinators) = setup("client_api", 1).await;
    let replicas = urls(&coordinators);
    let submitter =
        Client::new(replicas.clone(), add_executor(&sql, "s", "submitter").await).unwrap();
    let worker = Client::new(replicas.clone(), add_executor(&sql, "w", "t").await).unwrap();

    let one = submitter
        .submit(
            "c",
            &spec("t", json!({}), json!({"args": [1], "kwargs": {"k": "v"}})),
        )
        .await
        .unwrap();
    let many = submitter
        .submit_many(
            "c",
            &[
                spec("t", json!({}), json!({"args": [2]})),
                spec("t", json!({}), json!({"args": [3]})),
                spec("t", json!({}), json!({"args": [4]})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(many.len(), 3);
    let stats = submitter.stats("c").await.unwrap();
    assert_eq!(
        (stats.waiting, stats.executors, stats.paused),
        (4, 2, false)
    );

    let processes = worker
        .assign("c", Duration::from_secs(5), 10)
        .await
        .unwrap();
    assert_eq!(
        processes.iter().map(|p| p.id).collect::<Vec<_>>(),
        [vec![one], many.clone()].concat(),
        "queue order"
    );
    let first = &processes[0];
    assert_eq!(first.state, State::Running);
    assert_eq!(first.assigned_executor.as_deref(), Some("w"));
    assert_eq!(first.args(), &[json!(1)]);
    assert_eq!(first.kwargs().unwrap()["k"], json!("v"));
    assert!(first.started_at.is_some());

    worker.heartbeat().await.unwrap();
    worker.log(one, "hello").await.unwrap();
    let logs = worker.logs(one).await.unwrap();
    assert_eq!((logs.len(), logs[0].message.as_str()), (1, "hello"));
    assert_eq!(logs[0].executor, "w");

    worker.close(one, Some(json!({"sum": 1}))).await.unwrap();
    let closed = worker.process(one).await.unwrap();
    assert_eq!(closed.state, State::Success);
    assert_eq!(closed.output, Some(json!({"sum": 1})));
    // Closing twice, with no lost answer before: the 409 is the caller's error.
    let twice = worker.close(one, None).await.unwrap_err();
    assert!(
        matches!(&twice, Error::Api { status: 409, code, sqlstate: Some(s), .. } if code == "conflict" && s == "55000"),
        "{twice:?}"
    );

    let results = worker
        .close_many(&[
            Close {
                id: many[0],
                output: Some(json!(2)),
            },
            Close {
                id: many[1],
                output: None,
            },
        ])
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.closed), "{results:?}");
    let again = worker
        .close_many(&[Close {
            id: many[0],
            output: None,
        }])
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![Closed {
            id: many[0],
            closed: false,
            error: Some("not running (it is SUCCESS)".into())
        }]
    );
    assert_eq!(worker.process(many[1]).await.unwrap().output, None);

    worker.fail(many[2], &["boom"]).await.unwrap();
    let failed = worker.process(many[2]).await.unwrap();
    assert_eq!(failed.state, State::Failed);
    assert_eq!(failed.errors, Some(vec!["boom".to_owned()]));

    // A long-poll with nothing to do answers 204: an empty list.
    assert!(
        worker
            .assign("c", Duration::ZERO, 1)
            .await
            .unwrap()
            .is_empty()
    );

    // Errors are answers, not retried.
    let started = Instant::now();
    let missing = worker.process(i64::MAX).await.unwrap_err();
    assert_eq!(missing.status(), Some(404), "{missing:?}");
    let bad = worker.assign("c", Duration::ZERO, 0).await.unwrap_err();
    assert_eq!(bad.status(), Some(400), "{bad:?}");
    let other_colony = worker.stats("elsewhere").await.unwrap_err();
    assert_eq!(other_colony.status(), Some(404));
    assert!(started.elapsed() < Duration::from_secs(2));
    let stranger = Client::new(replicas.clone(), "not-a-token").unwrap();
    assert_eq!(stranger.stats("c").await.unwrap_err().status(), Some(401));

    let workflow = submitter
        .submit_workflow(
            "c",
            &[
                spec("t", json!({}), json!({"nodename": "a"})),
                spec(
                    "t",
                    json!({"dependencies": ["a"]}),
                    json!({"nodename": "b"}),
                ),
            ],
        )
        .await
        .unwrap();
    let graph = submitter.workflow(workflow).await.unwrap();
    assert!(graph.is_object() || graph.is_array(), "{graph}");

    let stats = worker.stats("c").await.unwrap();
    assert_eq!((stats.succeeded, stats.failed), (3, 1));
    assert_eq!(
        worker.health().await,
        vec![(replicas[0].clone(), colony_client::Health::Healthy)]
    );
}

#[tokio::test]
async fn a_dead_replica_in_the_list_is_passed_over() {
    let (_db, sql, coordinators) = setup("client_dead_first", 1).await;
    let live = urls(&coordinators).remove(0);
    let dead = dead_url();
    let client = Client::builder(
        vec![dead.clone(), live.clone()],
        add_executor(&sql, "w", "t").await,
    )
    .start_at(0)
    .build()
    .unwrap();
    assert_eq!(client.current_replica(), dead);
    let started = Instant::now();
    let id = client
        .submit("c", &spec("t", json!({}), json!({})))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(client.current_replica(), live);
    let got = client.assign("c", Duration::from_secs(5), 1).await.unwrap();
    assert_eq!(got[0].id, id);
    assert_eq!(
        client.health().await,
        vec![
            (dead, colony_client::Health::Dead),
            (live, colony_client::Health::Healthy)
        ]
    );
}
