//! Keyed, coalesced NOTIFY: the right channels, the right counts, only after COMMIT.

use super::{add_executor, assign, setup, submit};
use colony_proto::Key;
use e2e::spec;
use serde_json::json;
use tokio_postgres::Client;

fn location(l: &str) -> String {
    Key::Location {
        colony: "c",
        executor_type: "t",
        location: l,
    }
    .channel()
}
fn broadcast() -> String {
    Key::Broadcast {
        colony: "c",
        executor_type: "t",
    }
    .channel()
}
fn name(e: &str) -> String {
    Key::Name {
        colony: "c",
        executor_type: "t",
        executor: e,
    }
    .channel()
}

/// The SQL channel() function and colony-proto agree, so clients may use either.
#[tokio::test]
async fn sql_and_rust_derive_the_same_channels() {
    let (_db, client) = setup("notify_derivation").await;
    let row = client
        .query_one(
            "SELECT colony_assign.channel('c', 't', 'A'), colony_assign.channel('c', 't', NULL)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), location("A"));
    assert_eq!(row.get::<_, String>(1), broadcast());
    add_executor(&client, "e", "t", Some("A")).await;
    let channels: Vec<String> = client
        .query("SELECT colony_assign.channels('c', 'e')", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(channels, vec![location("A"), broadcast(), name("e")]);
}

#[tokio::test]
async fn each_process_notifies_exactly_its_key() {
    let (db, client) = setup("notify_keys").await;
    let mut listener = db
        .listener(&[
            location("A"),
            location("B"),
            broadcast(),
            name("e1"),
            name("e2"),
            name("e3"),
        ])
        .await;

    submit(&client, &spec("t", json!({"locationname": "A"}), json!({}))).await;
    assert_eq!(
        listener.drain(&client).await,
        vec![(location("A"), "1".into())]
    );

    submit(&client, &spec("t", json!({}), json!({}))).await;
    assert_eq!(
        listener.drain(&client).await,
        vec![(broadcast(), "1".into())]
    );

    // Named processes wake only named executors that could take them: registered, of the
    // type, and at the process's location when it has one.
    add_executor(&client, "e1", "t", Some("A")).await;
    add_executor(&client, "e2", "t", Some("B")).await;
    add_executor(&client, "e3", "t", None).await;
    let all = json!(["e1", "e2", "e3", "not_registered"]);
    submit(
        &client,
        &spec(
            "t",
            json!({"executornames": all, "locationname": "A"}),
            json!({}),
        ),
    )
    .await;
    assert_eq!(
        listener.drain(&client).await,
        vec![(name("e1"), "1".into())]
    );

    submit(
        &client,
        &spec("t", json!({"executornames": all}), json!({})),
    )
    .await;
    let mut got = listener.drain(&client).await;
    got.sort();
    let mut want = vec![
        (name("e1"), "1".to_owned()),
        (name("e2"), "1".to_owned()),
        (name("e3"), "1".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn one_notification_per_key_per_transaction_sent_at_commit() {
    let (db, client) = setup("notify_commit").await;
    let mut listener = db.listener(&[location("A"), broadcast()]).await;
    let mut tx_client = db.client().await;
    let tx = tx_client.transaction().await.unwrap();
    for _ in 0..3 {
        tx.query_one(
            "SELECT colony_assign.submit('c', $1)",
            &[&spec("t", json!({"locationname": "A"}), json!({}))],
        )
        .await
        .unwrap();
    }
    // Nothing is delivered while the transaction is open (the drain's marker commits first).
    assert_eq!(listener.drain(&client).await, vec![]);
    tx.commit().await.unwrap();
    assert_eq!(
        listener.drain(&client).await,
        vec![(location("A"), "3".into())]
    );
}

#[tokio::test]
async fn nothing_is_sent_on_rollback_or_for_a_rolled_back_savepoint() {
    let (db, client) = setup("notify_rollback").await;
    let mut listener = db.listener(&[broadcast()]).await;
    let work = spec("t", json!({}), json!({}));

    let mut tx_client = db.client().await;
    let tx = tx_client.transaction().await.unwrap();
    tx.query_one("SELECT colony_assign.submit('c', $1)", &[&work])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(listener.drain(&client).await, vec![]);

    let mut tx = tx_client.transaction().await.unwrap();
    tx.query_one("SELECT colony_assign.submit('c', $1)", &[&work])
        .await
        .unwrap();
    let sp = tx.savepoint("dropped").await.unwrap();
    sp.query_one("SELECT colony_assign.submit('c', $1)", &[&work])
        .await
        .unwrap();
    sp.query_one("SELECT colony_assign.submit('c', $1)", &[&work])
        .await
        .unwrap();
    sp.rollback().await.unwrap();
    let sp = tx.savepoint("kept").await.unwrap();
    sp.query_one("SELECT colony_assign.submit('c', $1)", &[&work])
        .await
        .unwrap();
    sp.commit().await.unwrap();
    tx.commit().await.unwrap();
    // 1 before the savepoints + 1 from the released one; the rolled-back two are not counted.
    assert_eq!(
        listener.drain(&client).await,
        vec![(broadcast(), "2".into())]
    );
}

/// One `submit_many` of 1,000 processes of type `t` in colony `c`: 500 at location A, 300 at B,
/// 200 location-less.
async fn submit_1000_over_three_keys(client: &tokio_postgres::Client) {
    let specs: Vec<_> = (0..1000)
        .map(|i| match i % 10 {
            0..=4 => spec("t", json!({"locationname": "A"}), json!({})),
            5..=7 => spec("t", json!({"locationname": "B"}), json!({})),
            _ => spec("t", json!({}), json!({})),
        })
        .collect();
    client
        .query(
            "SELECT colony_assign.submit_many('c', $1)",
            &[&serde_json::Value::Array(specs)],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn submit_many_of_1000_over_3_keys_sends_exactly_3_notifications() {
    let (db, client) = setup("notify_coalesce").await;
    let mut listener = db
        .listener(&[location("A"), location("B"), broadcast()])
        .await;
    submit_1000_over_three_keys(&client).await;
    let mut got = listener.drain(&client).await;
    got.sort();
    let mut want = vec![
        (location("A"), "500".to_owned()),
        (location("B"), "300".to_owned()),
        (broadcast(), "200".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
}

async fn running_process(client: &Client, executor: &str, extra: serde_json::Value) -> i64 {
    let id = submit(client, &spec("t", json!({"locationname": "A"}), extra)).await;
    assert_eq!(assign(client, executor, 1).await, vec![id]);
    id
}

/// The paths that put running work back to WAITING notify its key: an execution timeout
/// (reap), an undeliverable claim (release), a removed executor; and resume() notifies every key
/// with waiting work. (A silent executor's requeue is checked in lifecycle.rs, a workflow
/// child's release in workflows.rs, the end of a preferred-location wait in placement.rs.)
#[tokio::test]
async fn reap_release_remove_executor_and_resume_notify() {
    let (db, client) = setup("notify_requeue").await;
    add_executor(&client, "e", "t", Some("A")).await;
    let mut listener = db.listener(&[location("A")]).await;

    // reap(): an execution timeout requeues (deadline moved into the past instead of waiting).
    let id = running_process(&client, "e", json!({"maxexectime": 60, "maxretries": 1})).await;
    listener.drain(&client).await;
    client
        .execute("UPDATE colony_assign.processes SET exec_deadline = now() - interval '1 s' WHERE id = $1", &[&id])
        .await
        .unwrap();
    let row = client
        .query_one("SELECT * FROM colony_assign.reap()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("requeued"), 1);
    assert_eq!(
        listener.drain(&client).await,
        vec![(location("A"), "1".into())]
    );

    // release(): a claim the coordinator could not deliver comes back at once.
    assert_eq!(assign(&client, "e", 1).await, vec![id]);
    listener.drain(&client).await;
    client
        .execute(
            "SELECT colony_assign.release('c', 'e', ARRAY[$1::bigint])",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        listener.drain(&client).await,
        vec![(location("A"), "1".into())]
    );

    // remove_executor(): its running processes come back at once.
    assert_eq!(assign(&client, "e", 1).await, vec![id]);
    listener.drain(&client).await;
    client
        .execute("SELECT colony_assign.remove_executor('c', 'e')", &[])
        .await
        .unwrap();
    assert_eq!(
        listener.drain(&client).await,
        vec![(location("A"), "1".into())]
    );

    // resume(): every key with waiting work.
    client
        .execute("SELECT colony_assign.pause('c')", &[])
        .await
        .unwrap();
    submit(&client, &spec("t", json!({"locationname": "A"}), json!({}))).await;
    listener.drain(&client).await;
    client
        .execute("SELECT colony_assign.resume('c')", &[])
        .await
        .unwrap();
    assert_eq!(
        listener.drain(&client).await,
        vec![(location("A"), "2".into())]
    );
}

/// With the extension preloaded and the database's worker running, committed counts reach
/// listeners through the worker (so submitters never take the NOTIFY commit lock), still one
/// per key, and rolled-back work still notifies nothing.
#[tokio::test]
async fn the_worker_relays_notifications_after_commit() {
    let db = e2e::TestDb::with_reaper("notify_relay", 1000).await;
    let client = db.client().await;
    client
        .execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    db.wait_for_worker().await;
    let worker_pid: i32 = client
        .query_one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'colony_assign worker' AND datname = current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let probe = Key::Location {
        colony: "c",
        executor_type: "t",
        location: "probe",
    }
    .channel();
    let mut listener = db
        .listener(&[location("A"), location("B"), broadcast(), probe.clone()])
        .await;

    // Rolled back: nothing. Then a committed probe: it is the first thing to arrive.
    let mut tx_client = db.client().await;
    let tx = tx_client.transaction().await.unwrap();
    tx.query_one(
        "SELECT colony_assign.submit('c', $1)",
        &[&spec("t", json!({}), json!({}))],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    submit(
        &client,
        &spec("t", json!({"locationname": "probe"}), json!({})),
    )
    .await;
    let first = listener.next().await;
    assert_eq!((first.channel(), first.payload()), (probe.as_str(), "1"));
    assert_eq!(
        first.process_id(),
        worker_pid,
        "sent by the worker, not by the submitter"
    );

    // 1,000 over three keys in one transaction: three notifications with the counts.
    submit_1000_over_three_keys(&client).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let n = listener.next().await;
        assert_eq!(n.process_id(), worker_pid);
        got.push((n.channel().to_owned(), n.payload().to_owned()));
    }
    got.sort();
    let mut want = vec![
        (location("A"), "500".to_owned()),
        (location("B"), "300".to_owned()),
        (broadcast(), "200".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
    // And nothing else was sent for them: the next thing to arrive is a new probe.
    submit(
        &client,
        &spec("t", json!({"locationname": "probe"}), json!({})),
    )
    .await;
    assert_eq!(listener.next().await.channel(), probe);
}
