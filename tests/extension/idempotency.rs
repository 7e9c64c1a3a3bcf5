//! Idempotent submits: a retry with the same key returns the first call's ids (a client that
//! saw an error around a failover cannot know whether its commit happened).

use super::{setup, waiting};
use e2e::{fingerprint, spec, sqlstate};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::Barrier;

#[tokio::test]
async fn a_retried_submit_returns_the_first_ids_and_creates_nothing() {
    let (_db, client) = setup("idempotency").await;
    let one = spec("t", json!({}), json!({}));
    let first: i64 = client
        .query_one("SELECT colony_assign.submit('c', $1, 'k1')", &[&one])
        .await
        .unwrap()
        .get(0);
    let again: i64 = client
        .query_one("SELECT colony_assign.submit('c', $1, 'k1')", &[&one])
        .await
        .unwrap()
        .get(0);
    assert_eq!(first, again);
    assert_eq!(waiting(&client).await, 1);

    let many = Value::Array(vec![one.clone(), one.clone(), one.clone()]);
    let ids = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get(0)).collect::<Vec<i64>>();
    let first = ids(client
        .query(
            "SELECT * FROM colony_assign.submit_many('c', $1, 'k2')",
            &[&many],
        )
        .await
        .unwrap());
    let again = ids(client
        .query(
            "SELECT * FROM colony_assign.submit_many('c', $1, 'k2')",
            &[&many],
        )
        .await
        .unwrap());
    assert_eq!(first, again, "same ids, same order");
    assert_eq!(waiting(&client).await, 4);

    // The same key for another request is refused, and changes nothing.
    let before = fingerprint(&client).await;
    let other = spec("t", json!({}), json!({"priority": 3}));
    assert_eq!(
        sqlstate(
            client
                .query("SELECT colony_assign.submit('c', $1, 'k1')", &[&other])
                .await
        ),
        "22023"
    );
    assert_eq!(fingerprint(&client).await, before);
    // Without a key, every call submits.
    client
        .execute("SELECT colony_assign.submit('c', $1)", &[&one])
        .await
        .unwrap();
    client
        .execute("SELECT colony_assign.submit('c', $1)", &[&one])
        .await
        .unwrap();
    assert_eq!(waiting(&client).await, 6);
}

/// Two sessions retrying with one key at the same moment make one set of processes.
#[tokio::test]
async fn concurrent_retries_with_one_key_submit_once() {
    let (db, client) = setup("idempotency_race").await;
    let specs = Value::Array(vec![spec("t", json!({}), json!({})); 5]);
    let start = Arc::new(Barrier::new(4));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (config, start, specs) = (db.config(), start.clone(), specs.clone());
        tasks.push(tokio::spawn(async move {
            let (client, _) = e2e::connect_with(&config).await;
            start.wait().await;
            client
                .query(
                    "SELECT * FROM colony_assign.submit_many('c', $1, 'same')",
                    &[&specs],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<_>>()
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(waiting(&client).await, 5);
}
