//! Local-first placement (delay scheduling, DESIGN.md): a process with a preferred location is
//! offered at once only to executors there; when its `localitywait` is over, the database
//! releases it to every executor of its type and wakes them at that moment.

use super::{add_executor, assign, setup, submit};
use e2e::{TestDb, spec};
use serde_json::json;
use std::time::{Duration, Instant};

fn preferring(location: &str, wait: u32, priority: i32) -> serde_json::Value {
    spec(
        "t",
        json!({"preferredlocation": location, "localitywait": wait}),
        json!({"priority": priority}),
    )
}

/// Ends every preferred-location wait now and runs the release pass, instead of sleeping.
async fn end_waits(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "UPDATE colony_assign.processes SET locality_until = now() - interval '1 s'
             WHERE locality_until IS NOT NULL;
             SELECT colony_assign._release_local();",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn preferred_work_goes_to_its_location_first_and_anywhere_after_the_wait() {
    let (_db, client) = setup("placement_basic").await;
    add_executor(&client, "here", "t", Some("P")).await;
    add_executor(&client, "there", "t", Some("Q")).await;
    add_executor(&client, "nowhere", "t", None).await;
    let first = submit(&client, &preferring("P", 600, 0)).await;
    let second = submit(&client, &preferring("P", 600, 0)).await;

    // Elsewhere, nothing yet; at P, at once.
    assert!(assign(&client, "there", 10).await.is_empty());
    assert!(assign(&client, "nowhere", 10).await.is_empty());
    assert_eq!(assign(&client, "here", 1).await, vec![first]);

    // Once the wait is over, anyone of the type.
    end_waits(&client).await;
    assert_eq!(assign(&client, "nowhere", 10).await, vec![second]);
    let placed: Vec<(i64, Option<String>)> = client
        .query(
            "SELECT p.id, e.location FROM colony_assign.processes p
             JOIN colony_assign.executors e ON e.colony = p.colony AND e.name = p.assigned_executor
             ORDER BY p.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(placed, vec![(first, Some("P".into())), (second, None)]);
}

/// Hard conditions decide before the soft one: a location or executor names make the preferred
/// location irrelevant, and a wait of 0 means none.
#[tokio::test]
async fn hard_conditions_and_a_zero_wait_override_the_preference() {
    let (_db, client) = setup("placement_hard").await;
    add_executor(&client, "here", "t", Some("P")).await;
    add_executor(&client, "there", "t", Some("Q")).await;
    let pinned = submit(
        &client,
        &spec(
            "t",
            json!({"locationname": "Q", "preferredlocation": "P"}),
            json!({}),
        ),
    )
    .await;
    let named = submit(
        &client,
        &spec(
            "t",
            json!({"executornames": ["there"], "preferredlocation": "P"}),
            json!({}),
        ),
    )
    .await;
    let no_wait = submit(&client, &preferring("P", 0, 0)).await;
    let mut got = assign(&client, "there", 10).await;
    got.sort();
    assert_eq!(got, vec![pinned, named, no_wait]);
    assert!(assign(&client, "here", 10).await.is_empty());
}

/// Priorities: a waiting high-priority preference holds back nobody else's work; at its
/// location it goes first.
#[tokio::test]
async fn a_preference_keeps_priority_order_where_it_may_run() {
    let (_db, client) = setup("placement_priority").await;
    add_executor(&client, "here", "t", Some("P")).await;
    add_executor(&client, "there", "t", Some("Q")).await;
    let urgent = submit(&client, &preferring("P", 600, 100)).await;
    let plain = submit(&client, &spec("t", json!({}), json!({}))).await;
    let plain_too = submit(&client, &spec("t", json!({}), json!({}))).await;
    assert_eq!(assign(&client, "there", 1).await, vec![plain]);
    assert_eq!(assign(&client, "here", 2).await, vec![urgent, plain_too]);
}

/// Strict mode: exact order among the processes each executor may take; a preferred process
/// waiting for P is not one the executor at Q may take yet.
#[tokio::test]
async fn strict_mode_orders_what_an_executor_may_take() {
    let (_db, client) = setup("placement_strict").await;
    client
        .execute("SELECT colony_assign.set_strict('c', true)", &[])
        .await
        .unwrap();
    add_executor(&client, "here", "t", Some("P")).await;
    add_executor(&client, "there", "t", Some("Q")).await;
    let waiting_for_p = submit(&client, &preferring("P", 600, 10)).await;
    let plain = submit(&client, &spec("t", json!({}), json!({}))).await;
    assert_eq!(assign(&client, "there", 5).await, vec![plain]);
    end_waits(&client).await;
    assert_eq!(assign(&client, "there", 5).await, vec![waiting_for_p]);
}

/// A requeued process may run anywhere at once: its wait was once.
#[tokio::test]
async fn a_requeued_preference_runs_anywhere() {
    let (_db, client) = setup("placement_requeue").await;
    add_executor(&client, "here", "t", Some("P")).await;
    add_executor(&client, "there", "t", Some("Q")).await;
    let id = submit(&client, &preferring("P", 600, 0)).await;
    assert_eq!(assign(&client, "here", 1).await, vec![id]);
    client
        .execute(
            "SELECT colony_assign.release('c', 'here', ARRAY[$1::bigint])",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(assign(&client, "there", 1).await, vec![id]);
}

/// With the background worker, the release happens when the wait ends, and every executor of
/// the type is woken then: a notification on the broadcast key, never before the wait.
#[tokio::test]
async fn the_worker_releases_and_wakes_when_the_wait_ends() {
    let db = TestDb::with_reaper("placement_worker", 60_000).await;
    let client = db.client().await;
    client
        .execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    add_executor(&client, "here", "t", Some("P")).await;
    add_executor(&client, "there", "t", Some("Q")).await;
    let channels: Vec<String> = ["P", ""]
        .iter()
        .map(|l| async {
            client
                .query_one("SELECT colony_assign.channel('c', 't', $1)", &[l])
                .await
                .unwrap()
                .get::<_, String>(0)
        })
        .collect::<futures_util::future::JoinAll<_>>()
        .await;
    let (p_key, broadcast) = (channels[0].clone(), channels[1].clone());
    db.wait_for_worker().await;
    let mut listener = db.listener(&channels).await;
    let submitted = Instant::now();
    let id = submit(&client, &preferring("P", 2, 0)).await;
    let first = listener.next().await;
    assert_eq!(first.channel(), p_key, "announced to P first");
    let second = listener.next().await;
    let waited = submitted.elapsed();
    assert_eq!(
        second.channel(),
        broadcast,
        "then to every executor of the type"
    );
    assert!(
        waited >= Duration::from_secs(2),
        "not before the wait: {waited:?}"
    );
    // The reap interval is a minute: only the release at the wait's end can explain this.
    assert!(
        waited < Duration::from_secs(30),
        "released at the wait's end: {waited:?}"
    );
    assert_eq!(assign(&client, "there", 1).await, vec![id]);
}
