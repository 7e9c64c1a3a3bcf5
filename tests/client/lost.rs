//! Answers lost mid-flight, with real coordinators and a real database:
//!
//! - **applied, answer lost**: the test holds a lock in PostgreSQL that the call needs, so the
//!   call waits inside the database on replica A; A is then killed (SIGKILL). The client sees
//!   its connection reset and retries on replica B, whose session queues behind A's. When the
//!   test lets go, A's orphaned session finishes and commits — nobody hears its answer — and
//!   B's retry finds what it did.
//! - **not applied, answer lost**: replica A is frozen (SIGSTOP). The kernel accepts the
//!   connection and the request, nothing answers, and the client's request timeout ends the
//!   attempt.

use super::{
    add_executor, count, freeze, kill, replica_name, setup, urls, wait_blocked, wait_finished,
};
use colony_client::{Client, Close, Error, State};
use e2e::spec;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_postgres::Client as Sql;

/// A transaction of the test's own that holds a lock until it commits.
async fn hold(db: &e2e::TestDb, lock: &str) -> Sql {
    let blocker = db.client().await;
    blocker.batch_execute("BEGIN").await.unwrap();
    blocker.batch_execute(lock).await.unwrap();
    blocker
}

/// `n` processes assigned to the client's executor, through its replica.
async fn running(sql: &Sql, client: &Client, n: usize) -> Vec<i64> {
    for _ in 0..n {
        sql.query(
            "SELECT colony_assign.submit('c', $1)",
            &[&spec("t", json!({}), json!({}))],
        )
        .await
        .unwrap();
    }
    let processes = client
        .assign("c", Duration::from_secs(5), n as u32)
        .await
        .unwrap();
    assert_eq!(processes.len(), n);
    processes.iter().map(|p| p.id).collect()
}

async fn state(sql: &Sql, id: i64) -> (i32, Option<Value>) {
    let row = sql
        .query_one(
            "SELECT state, output FROM colony_assign.processes WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_submit_applied_whose_answer_was_lost_is_retried_with_the_same_key_and_exists_once() {
    let test = "client_lost_submit";
    let (db, sql, mut coordinators) = setup(test, 2).await;
    let (a, b) = (replica_name(test, 0), replica_name(test, 1));
    let client = Client::builder(urls(&coordinators), add_executor(&sql, "s", "s").await)
        .start_at(0)
        .build()
        .unwrap();
    let specs: Vec<Value> = (0..2)
        .map(|i| spec("t", json!({}), json!({"args": [i]})))
        .collect();

    // Submits wait inside PostgreSQL until the test lets go of the table.
    let blocker = hold(&db, "LOCK TABLE colony_assign.processes IN SHARE MODE").await;
    let submitting = tokio::spawn({
        let (client, specs) = (client.clone(), specs.clone());
        async move { client.submit_many("c", &specs).await }
    });
    wait_blocked(&sql, &a, "submit_many").await;
    // A dies with the request inside its database session: the client's connection is reset,
    // so it retries on B, and B's session waits behind A's.
    kill(coordinators.remove(0)).await;
    wait_blocked(&sql, &b, "submit_many").await;
    blocker.batch_execute("COMMIT").await.unwrap();

    let ids = submitting
        .await
        .unwrap()
        .expect("the retried submit succeeds");
    // Both attempts reached the database: A's orphaned session ran its submit to the end.
    wait_finished(&sql, &a, "submit_many").await;
    assert_eq!(
        count(&sql, "SELECT count(*) FROM colony_assign.processes").await,
        2,
        "one copy of the two specs: both attempts carried the same Idempotency-Key"
    );
    let stored: Vec<i64> = sql
        .query_one(
            "SELECT array_agg(id ORDER BY id) FROM colony_assign.processes",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ids, stored);
    let keys = sql
        .query("SELECT ids FROM colony_assign.idempotency_keys", &[])
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "one key for the one logical submit");
    assert_eq!(keys[0].get::<_, Vec<i64>>(0), ids);

    // The next logical submit has a key of its own: the same specs again are new processes.
    let again = client.submit_many("c", &specs).await.unwrap();
    assert!(again.iter().all(|id| !ids.contains(id)), "{again:?}");
    // A caller's own key is sent as given: SQL with the same key finds the same call.
    let mine = client
        .submit_many_with_key("c", &specs, "mine")
        .await
        .unwrap();
    let by_sql: Vec<i64> = sql
        .query(
            "SELECT colony_assign.submit_many('c', $1, 'mine')",
            &[&Value::Array(specs.clone())],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(by_sql, mine);
    assert_eq!(
        count(&sql, "SELECT count(*) FROM colony_assign.processes").await,
        6
    );
}

#[tokio::test]
async fn a_close_or_fail_applied_whose_answer_was_lost_succeeds_when_the_retry_finds_it_done() {
    let test = "client_lost_close";
    let (db, sql, mut coordinators) = setup(test, 3).await;
    let client = Client::builder(urls(&coordinators), add_executor(&sql, "w", "t").await)
        .start_at(0)
        .build()
        .unwrap();
    let ids = running(&sql, &client, 2).await;
    let (closed, failed) = (ids[0], ids[1]);

    // Close through replica 0, which dies while the close waits for the process's row; the
    // retry on replica 1 queues behind it and finds the process SUCCESS: 409, which after a
    // lost answer means done.
    let blocker = hold(
        &db,
        &format!("SELECT 1 FROM colony_assign.processes WHERE id = {closed} FOR UPDATE"),
    )
    .await;
    let closing = tokio::spawn({
        let client = client.clone();
        async move { client.close(closed, Some(json!({"x": 1}))).await }
    });
    wait_blocked(&sql, &replica_name(test, 0), "close_batch").await;
    kill(coordinators.remove(0)).await;
    wait_blocked(&sql, &replica_name(test, 1), "close_batch").await;
    blocker.batch_execute("COMMIT").await.unwrap();
    closing
        .await
        .unwrap()
        .expect("a retried close that finds its process SUCCESS succeeded");
    assert_eq!(state(&sql, closed).await, (2, Some(json!({"x": 1}))));
    // The same 409 with no lost answer before it is the caller's error (closing twice).
    let twice = client.close(closed, None).await.unwrap_err();
    assert!(
        matches!(&twice, Error::Api { status: 409, sqlstate: Some(s), message, .. }
            if s == "55000" && message.ends_with("not running (it is SUCCESS)")),
        "{twice:?}"
    );

    // Fail likewise: through replica 1, which dies; the retry on replica 2 finds it FAILED.
    let blocker = hold(
        &db,
        &format!("SELECT 1 FROM colony_assign.processes WHERE id = {failed} FOR UPDATE"),
    )
    .await;
    let failing = tokio::spawn({
        let client = client.clone();
        async move { client.fail(failed, &["boom"]).await }
    });
    wait_blocked(&sql, &replica_name(test, 1), "colony_assign.fail(").await;
    kill(coordinators.remove(0)).await;
    wait_blocked(&sql, &replica_name(test, 2), "colony_assign.fail(").await;
    blocker.batch_execute("COMMIT").await.unwrap();
    failing
        .await
        .unwrap()
        .expect("a retried fail that finds its process FAILED succeeded");
    let process = client.process(failed).await.unwrap();
    assert_eq!(process.state, State::Failed);
    assert_eq!(process.errors, Some(vec!["boom".to_owned()]));
}

#[tokio::test]
async fn a_close_whose_answer_was_lost_is_an_error_when_the_retry_finds_another_state() {
    let test = "client_lost_cancelled";
    let (db, sql, mut coordinators) = setup(test, 2).await;
    let client = Client::builder(urls(&coordinators), add_executor(&sql, "w", "t").await)
        .start_at(0)
        .build()
        .unwrap();
    let id = running(&sql, &client, 1).await[0];
    let blocker = hold(
        &db,
        &format!("SELECT 1 FROM colony_assign.processes WHERE id = {id} FOR UPDATE"),
    )
    .await;
    let closing = tokio::spawn({
        let client = client.clone();
        async move { client.close(id, None).await }
    });
    wait_blocked(&sql, &replica_name(test, 0), "close_batch").await;
    kill(coordinators.remove(0)).await;
    wait_blocked(&sql, &replica_name(test, 1), "close_batch").await;
    // Meanwhile the process is cancelled: neither attempt can close it.
    blocker
        .execute("SELECT colony_assign.cancel($1)", &[&id])
        .await
        .unwrap();
    blocker.batch_execute("COMMIT").await.unwrap();
    let e = closing.await.unwrap().unwrap_err();
    assert!(
        matches!(&e, Error::Api { status: 409, message, .. } if message.ends_with("not running (it is CANCELLED)")),
        "{e:?}"
    );
    assert_eq!(state(&sql, id).await.0, 4);
}

#[tokio::test]
async fn close_many_after_a_lost_answer_counts_items_already_success_as_closed() {
    let test = "client_lost_close_many";
    let (db, sql, mut coordinators) = setup(test, 2).await;
    let client = Client::builder(urls(&coordinators), add_executor(&sql, "w", "t").await)
        .start_at(0)
        .build()
        .unwrap();
    let ids = running(&sql, &client, 3).await;
    let closes: Vec<Close> = ids
        .iter()
        .map(|&id| Close {
            id,
            output: Some(json!(id)),
        })
        .collect();
    // Items are closed in input order: A's close_many waits at the first.
    let blocker = hold(
        &db,
        &format!(
            "SELECT 1 FROM colony_assign.processes WHERE id = {} FOR UPDATE",
            ids[0]
        ),
    )
    .await;
    let closing = tokio::spawn({
        let (client, closes) = (client.clone(), closes.clone());
        async move { client.close_many(&closes).await }
    });
    wait_blocked(&sql, &replica_name(test, 0), "close_many").await;
    kill(coordinators.remove(0)).await;
    wait_blocked(&sql, &replica_name(test, 1), "close_many").await;
    // The second process is cancelled meanwhile.
    blocker
        .execute("SELECT colony_assign.cancel($1)", &[&ids[1]])
        .await
        .unwrap();
    blocker.batch_execute("COMMIT").await.unwrap();

    let results = closing.await.unwrap().unwrap();
    assert_eq!(
        results.iter().map(|r| (r.id, r.closed)).collect::<Vec<_>>(),
        [(ids[0], true), (ids[1], false), (ids[2], true)],
        "{results:?}"
    );
    assert_eq!(results[0].error, None);
    assert_eq!(
        results[1].error.as_deref(),
        Some("not running (it is CANCELLED)")
    );
    for &id in [ids[0], ids[2]].iter() {
        assert_eq!(state(&sql, id).await, (2, Some(json!(id))));
    }
    // Without a lost answer, the coordinator's verdict stands.
    let again = client.close_many(&closes).await.unwrap();
    assert!(again.iter().all(|r| !r.closed), "{again:?}");
    assert_eq!(
        again[0].error.as_deref(),
        Some("not running (it is SUCCESS)")
    );
}

#[tokio::test]
async fn a_lost_answer_ends_a_call_that_must_not_run_twice_and_moves_one_that_may() {
    let test = "client_lost_once";
    let (_db, sql, coordinators) = setup(test, 2).await;
    let token = add_executor(&sql, "w", "t").await;
    let replicas = urls(&coordinators);
    let id = running(
        &sql,
        &Client::builder(replicas.clone(), token.clone())
            .start_at(1)
            .build()
            .unwrap(),
        1,
    )
    .await[0];
    // Replica 0 is frozen: it accepts the connection, and never answers.
    freeze(&coordinators[0]).await;
    let client = || {
        Client::builder(replicas.clone(), token.clone())
            .start_at(0)
            .request_timeout(Duration::from_secs(1))
            .build()
            .unwrap()
    };
    let e = client().log(id, "again").await.unwrap_err();
    assert!(matches!(e, Error::OutcomeUnknown(_)), "{e:?}");
    let e = client()
        .submit_workflow("c", &[spec("t", json!({}), json!({"nodename": "a"}))])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::OutcomeUnknown(_)), "{e:?}");
    // Neither was sent again (to replica 1).
    assert_eq!(
        count(&sql, "SELECT count(*) FROM colony_assign.logs").await,
        0
    );
    assert_eq!(
        count(&sql, "SELECT count(*) FROM colony_assign.workflows").await,
        0
    );
    // An idempotent call whose answer is lost moves on.
    let c = client();
    c.heartbeat().await.unwrap();
    assert_eq!(c.current_replica(), replicas[1]);
}
