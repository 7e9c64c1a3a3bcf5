//! A SQL-direct claim whose answer died with its session (docs/RELIABILITY.md, defect 2): the
//! claim is committed before the answer is sent, so the executor never learns of it; `running()`
//! on its next session lists it, with everything needed to run it.

use super::{add_executor, assign, setup, submit};
use e2e::{eventually, spec};
use faultproxy::Proxy;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_claim_whose_answer_died_with_its_session_is_listed_by_running_on_the_next() {
    let (db, client) = setup("recovery_lost_answer").await;
    add_executor(&client, "e", "t", None).await;
    let id = submit(&client, &spec("t", json!({}), json!({"kwargs": {"n": 1}}))).await;

    // The executor's session reaches PostgreSQL through a proxy that can drop its traffic.
    let proxy = Proxy::start(format!("127.0.0.1:{}", db.config().get_ports()[0]))
        .await
        .unwrap();
    let through_proxy = format!(
        "host=127.0.0.1 port={} user=postgres dbname={}",
        proxy.port(),
        db.name
    );
    let (lost, connection) = tokio_postgres::connect(&through_proxy, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let pid: i32 = lost
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    // Hold the claim back until the link is dead: the assign waits for the table lock, the
    // link goes dark, the lock is released, and the claim commits into a dead connection.
    let locker = db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE colony_assign.processes IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let claim = tokio::spawn(async move {
        lost.query("SELECT id FROM colony_assign.assign('c', 'e')", &[])
            .await
    });
    eventually("the executor's assign waits for the lock", || async {
        client
            .query_one(
                "SELECT wait_event_type IS NOT DISTINCT FROM 'Lock' FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await;
    proxy.blackhole().await;
    locker.batch_execute("COMMIT").await.unwrap();
    eventually("the claim commits", || async {
        client
            .query_one(
                "SELECT state = 1 AND assigned_executor = 'e' FROM colony_assign.processes WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await;
    // The executor never hears the answer.
    if let Ok(answer) = tokio::time::timeout(Duration::from_millis(500), claim).await {
        panic!("the answer crossed a blackholed link: {answer:?}");
    }

    // Its next session: nothing new to assign, and running() lists the lost claim in full.
    let next = db.client().await;
    assert!(assign(&next, "e", 10).await.is_empty());
    let rows = next
        .query(
            "SELECT id, state, assigned_executor, retries, spec->'kwargs', lease_until IS NULL
             FROM colony_assign.running('c', 'e')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.get::<_, i64>(0), id);
    assert_eq!(row.get::<_, i32>(1), 1);
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("e"));
    assert_eq!(row.get::<_, i32>(3), 0, "no retry spent");
    assert_eq!(row.get::<_, serde_json::Value>(4), json!({"n": 1}));
    assert!(row.get::<_, bool>(5), "SQL-direct claims carry no lease");
    // Running it to the end is what the executor does with it.
    next.execute("SELECT colony_assign.close($1, 'e')", &[&id])
        .await
        .unwrap();
    assert!(
        next.query("SELECT id FROM colony_assign.running('c', 'e')", &[])
            .await
            .unwrap()
            .is_empty()
    );
    proxy.heal().await;
}

/// running() lists only the executor's RUNNING processes, oldest claim first, and refuses what
/// it refuses elsewhere.
#[tokio::test]
async fn running_lists_the_executors_running_processes_oldest_claim_first() {
    let (_db, client) = setup("recovery_running").await;
    add_executor(&client, "e", "t", None).await;
    add_executor(&client, "f", "t", None).await;
    for n in 0..5 {
        submit(
            &client,
            &spec("t", json!({}), json!({ "kwargs": { "n": n } })),
        )
        .await;
    }
    let first = assign(&client, "e", 1).await;
    let of_f = assign(&client, "f", 1).await;
    let then = assign(&client, "e", 2).await;
    client
        .execute("SELECT colony_assign.close($1, 'e')", &[&then[1]])
        .await
        .unwrap();
    let listed: Vec<i64> = client
        .query("SELECT id FROM colony_assign.running('c', 'e')", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(listed, [first[0], then[0]]);
    assert_eq!(
        client
            .query("SELECT id FROM colony_assign.running('c', 'f')", &[])
            .await
            .unwrap()
            .len(),
        of_f.len()
    );
    for (call, code) in [
        (
            "SELECT * FROM colony_assign.running('c', 'nobody')",
            "P0002",
        ),
        ("SELECT * FROM colony_assign.running('nope', 'e')", "P0002"),
        ("SELECT * FROM colony_assign.running('c', NULL)", "22004"),
        ("SELECT * FROM colony_assign.running(NULL, 'e')", "22004"),
    ] {
        let error = client.query(call, &[]).await.unwrap_err();
        assert_eq!(error.code().unwrap().code(), code, "{call}");
    }
}
