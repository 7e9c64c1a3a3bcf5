//! Long-poll semantics: bounded timeouts, 204, disconnects, undeliverable responses.

use super::{add_executor, count, setup};
use e2e::{HttpExecutor, eventually, spec};
use serde_json::json;

#[tokio::test]
async fn timeouts_are_bounded_and_answered_with_204() {
    let (_db, client, coordinators) = setup("coord_timeouts", 1, &[]).await;
    let token = add_executor(&client, "c", "e", "t", None).await;
    let executor = HttpExecutor::new(&coordinators[0], &token);
    for bad in [
        "timeout=61",
        "timeout=-1",
        "timeout=abc",
        "timeout=1.5",
        "max=0",
        "max=1001",
        "max=x",
        "wait=3",
    ] {
        let response = executor
            .http
            .post(coordinators[0].url(&format!("/v1/colonies/c/assign?{bad}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request", "{bad}");
    }
    // Nothing waiting: 204 once the timeout passes (0 = check once).
    assert!(executor.assign("c", 0, 1).await.is_empty());
    assert!(executor.assign("c", 1, 1).await.is_empty());
    client
        .query_one(
            "SELECT colony_assign.submit('c', $1)",
            &[&spec("t", json!({}), json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(executor.assign("c", 0, 1).await.len(), 1);
}

#[tokio::test]
async fn a_client_that_disconnects_is_unparked_at_once_and_never_assigned() {
    let (_db, client, coordinators) = setup("coord_disconnect", 1, &[]).await;
    let coordinator = &coordinators[0];
    let token = add_executor(&client, "c", "e", "t", None).await;
    let executor = HttpExecutor::new(coordinator, &token);
    let poll = tokio::spawn(async move { executor.assign("c", 60, 1).await });
    eventually("long-poll parked", || async {
        coordinator
            .metric("colony_parked_waiters", &[("kind", "name")])
            .await
            == 1.0
    })
    .await;
    poll.abort(); // drops the connection
    eventually("long-poll unparked", || async {
        coordinator
            .metric("colony_parked_waiters", &[("kind", "name")])
            .await
            == 0.0
    })
    .await;
    let id: i64 = client
        .query_one(
            "SELECT colony_assign.submit('c', $1)",
            &[&spec("t", json!({}), json!({}))],
        )
        .await
        .unwrap()
        .get(0);
    // Nobody is parked any more, so the process must still be waiting; a new poll gets it.
    assert_eq!(
        count(
            &client,
            &format!("SELECT state::bigint FROM colony_assign.processes WHERE id = {id}")
        )
        .await,
        0
    );
    let executor = HttpExecutor::new(coordinator, &token);
    let got = executor.assign("c", 5, 1).await;
    assert_eq!(got[0]["id"].as_i64(), Some(id));
}

/// The worst case: the request is gone while its assign is inside the database. The claim
/// still commits; the coordinator must give the process back at once.
#[tokio::test]
async fn a_claim_whose_requester_vanished_goes_back_to_waiting() {
    let (db, client, coordinators) = setup("coord_release", 1, &[]).await;
    let coordinator = &coordinators[0];
    client
        .execute("SELECT colony_assign.set_strict('c', true)", &[])
        .await
        .unwrap();
    let token = add_executor(&client, "c", "e", "t", None).await;
    let id: i64 = client
        .query_one(
            "SELECT colony_assign.submit('c', $1)",
            &[&spec("t", json!({}), json!({}))],
        )
        .await
        .unwrap()
        .get(0);
    // Hold strict mode's lock so the coordinator's assign blocks inside the database.
    let mut holder = db.client().await;
    let tx = holder.transaction().await.unwrap();
    tx.execute("SELECT colony_assign._strict_lock('c', 't')", &[])
        .await
        .unwrap();
    let executor = HttpExecutor::new(coordinator, &token);
    let poll = tokio::spawn(async move { executor.assign("c", 30, 1).await });
    eventually("assign blocked on the strict lock", || async {
        count(
            &client,
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        )
        .await
            == 1
    })
    .await;
    poll.abort();
    eventually("long-poll unparked", || async {
        coordinator
            .metric("colony_parked_waiters", &[("kind", "name")])
            .await
            == 0.0
    })
    .await;
    tx.commit().await.unwrap();
    eventually("claim given back", || async {
        coordinator
            .metric("colony_released_processes_total", &[])
            .await
            == 1.0
    })
    .await;
    let row = client
        .query_one(
            "SELECT state, assigned_executor FROM colony_assign.processes WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 0, "WAITING again");
    assert_eq!(row.get::<_, Option<String>>(1), None);
}
