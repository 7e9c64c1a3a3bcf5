//! Executor liveness, retention, logs, and the background reaper.

use super::{add_executor, assign, setup, submit};
use colony_proto::Key;
use e2e::{TestDb, eventually, fingerprint, spec, sqlstate};
use serde_json::json;

#[tokio::test]
async fn a_silent_executor_loses_its_processes_and_a_heartbeating_one_keeps_them() {
    let (db, client) = setup("lifecycle_stale").await;
    client
        .execute(
            "SELECT colony_assign.configure('c', stale_after => interval '1 minute')",
            &[],
        )
        .await
        .unwrap();
    add_executor(&client, "quiet", "t", Some("A")).await;
    add_executor(&client, "busy", "t", Some("A")).await;
    let lost = submit(&client, &spec("t", json!({"locationname": "A"}), json!({}))).await;
    assert_eq!(assign(&client, "quiet", 1).await, vec![lost]);
    let kept = submit(&client, &spec("t", json!({"locationname": "A"}), json!({}))).await;
    assert_eq!(assign(&client, "busy", 1).await, vec![kept]);
    // Ten minutes pass (moved back rather than waited for): "busy" has been running its
    // process all along but heartbeats; "quiet" said nothing.
    client
        .batch_execute(
            "UPDATE colony_assign.executors SET last_seen = now() - interval '10 minutes';
             UPDATE colony_assign.processes SET started_at = now() - interval '10 minutes';",
        )
        .await
        .unwrap();
    client
        .execute("SELECT colony_assign.heartbeat('c', 'busy')", &[])
        .await
        .unwrap();
    let key = Key::Location {
        colony: "c",
        executor_type: "t",
        location: "A",
    }
    .channel();
    let mut listener = db.listener(std::slice::from_ref(&key)).await;

    let row = client
        .query_one("SELECT * FROM colony_assign.reap()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("stale_executors"), 1);
    assert_eq!(row.get::<_, i64>("requeued"), 1);
    assert_eq!(
        listener.drain(&client).await,
        vec![(key, "1".to_owned())],
        "requeue notified"
    );
    let states: Vec<(i64, i32)> = client
        .query(
            "SELECT id, state FROM colony_assign.processes ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(states, vec![(lost, 0), (kept, 1)]);
    // Once is enough: a second pass finds nothing, and the quiet executor is welcome back.
    let row = client
        .query_one("SELECT * FROM colony_assign.reap()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("stale_executors"), 0);
    assert_eq!(assign(&client, "quiet", 1).await, vec![lost]);
    let stale: Option<std::time::SystemTime> = client
        .query_one(
            "SELECT stale_since FROM colony_assign.executors WHERE name = 'quiet'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stale, None);
    assert_eq!(
        sqlstate(
            client
                .query("SELECT colony_assign.heartbeat('c', 'nobody')", &[])
                .await
        ),
        "P0002"
    );
}

#[tokio::test]
async fn retention_deletes_old_finished_processes_with_their_logs() {
    let (_db, client) = setup("lifecycle_retention").await;
    client
        .execute(
            "SELECT colony_assign.configure('c', retention => interval '1 hour')",
            &[],
        )
        .await
        .unwrap();
    add_executor(&client, "e", "t", None).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = submit(&client, &spec("t", json!({}), json!({}))).await;
        assert_eq!(assign(&client, "e", 1).await, vec![id]);
        client
            .execute("SELECT colony_assign.log($1, 'e', 'working')", &[&id])
            .await
            .unwrap();
        client
            .execute("SELECT colony_assign.close($1, 'e')", &[&id])
            .await
            .unwrap();
        ids.push(id);
    }
    let waiting = submit(&client, &spec("t", json!({}), json!({}))).await;
    // Three of the five ended two hours ago.
    client
        .execute(
            "UPDATE colony_assign.processes SET ended_at = now() - interval '2 hours' WHERE id = ANY ($1)",
            &[&&ids[..3]],
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT * FROM colony_assign.reap()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("deleted"), 3);
    let left: Vec<i64> = client
        .query("SELECT id FROM colony_assign.processes ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, vec![ids[3], ids[4], waiting]);
    let logs: i64 = client
        .query_one("SELECT count(*) FROM colony_assign.logs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(logs, 2, "logs go with their processes");
}

#[tokio::test]
async fn logs_belong_to_the_running_executor_and_are_bounded() {
    let (_db, client) = setup("lifecycle_logs").await;
    add_executor(&client, "e", "t", None).await;
    add_executor(&client, "other", "t", None).await;
    let id = submit(&client, &spec("t", json!({}), json!({}))).await;
    assert_eq!(
        sqlstate(
            client
                .query("SELECT colony_assign.log($1, 'e', 'early')", &[&id])
                .await
        ),
        "55000"
    );
    assert_eq!(assign(&client, "e", 1).await, vec![id]);
    for i in 0..3 {
        client
            .execute(
                "SELECT colony_assign.log($1, 'e', $2)",
                &[&id, &format!("step {i}")],
            )
            .await
            .unwrap();
    }
    let before = fingerprint(&client).await;
    assert_eq!(
        sqlstate(
            client
                .query("SELECT colony_assign.log($1, 'other', 'x')", &[&id])
                .await
        ),
        "42501"
    );
    assert_eq!(
        sqlstate(
            client
                .query(
                    "SELECT colony_assign.log($1, 'e', $2)",
                    &[&id, &"x".repeat(20_000)]
                )
                .await
        ),
        "54000"
    );
    assert_eq!(
        sqlstate(
            client
                .query("SELECT colony_assign.log($1, 'e', NULL)", &[&id])
                .await
        ),
        "22004"
    );
    assert_eq!(
        sqlstate(
            client
                .query("SELECT colony_assign.log(-1, 'e', 'x')", &[])
                .await
        ),
        "P0002"
    );
    assert_eq!(fingerprint(&client).await, before);
    let messages: Vec<String> = client
        .query("SELECT message FROM colony_assign.logs($1)", &[&id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(messages, vec!["step 0", "step 1", "step 2"]);
}

/// With the extension preloaded, a background reaper enforces deadlines without anyone
/// calling reap().
#[tokio::test]
async fn the_background_worker_reaps_without_being_asked() {
    let db = TestDb::with_reaper("lifecycle_worker", 100).await;
    let client = db.client().await;
    client
        .execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    add_executor(&client, "e", "t", None).await;
    let id = submit(
        &client,
        &spec("t", json!({}), json!({"maxexectime": 600, "maxretries": 1})),
    )
    .await;
    assert_eq!(assign(&client, "e", 1).await, vec![id]);
    db.wait_for_worker().await;
    client
        .execute("UPDATE colony_assign.processes SET exec_deadline = now() - interval '1 s' WHERE id = $1", &[&id])
        .await
        .unwrap();
    eventually("requeued by the background reaper", || async {
        client
            .query_one(
                "SELECT state = 0 AND retries = 1 FROM colony_assign.processes WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await;
}
