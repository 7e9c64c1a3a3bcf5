//! Claim leases through the client: a heartbeat acknowledges the processes the client holds
//! (received, not yet closed, failed or logged) and no others; a heartbeat holding nothing
//! only keeps the executor alive.

use super::{add_executor, setup, urls};
use colony_client::Client;
use e2e::spec;
use serde_json::json;
use std::time::Duration;
use tokio_postgres::Client as Sql;

/// Whether process `id` has a claim lease (`lease_until` set).
async fn leased(sql: &Sql, id: i64) -> bool {
    sql.query_one(
        "SELECT lease_until IS NOT NULL FROM colony_assign.processes WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn a_heartbeat_acknowledges_the_processes_held_and_no_others() {
    let (_db, sql, coordinators) = setup("client_heartbeat_held", 1).await;
    // A lease long enough that the clients' own half-lease heartbeats stay out of the test.
    sql.execute(
        "SELECT colony_assign.configure('c', claim_lease => interval '10 minutes')",
        &[],
    )
    .await
    .unwrap();
    let token = add_executor(&sql, "w", "t").await;
    // Two clients of one executor: what one received, the other does not hold.
    let holder = Client::new(urls(&coordinators), token.clone()).unwrap();
    let other = Client::new(urls(&coordinators), token).unwrap();
    let ids = holder
        .submit_many("c", &vec![spec("t", json!({}), json!({})); 4])
        .await
        .unwrap();

    let held = holder.assign("c", Duration::from_secs(5), 3).await.unwrap();
    let not_held = other.assign("c", Duration::from_secs(5), 1).await.unwrap();
    let held: Vec<i64> = held.iter().map(|p| p.id).collect();
    assert_eq!(held, ids[..3]);
    assert_eq!(not_held[0].id, ids[3]);
    assert!(not_held[0].lease_until.is_some(), "{:?}", not_held[0]);
    for &id in &ids {
        assert!(
            leased(&sql, id).await,
            "process {id} was claimed with a lease"
        );
    }
    // A logged process is acknowledged by the log line: the holder no longer holds it.
    holder.log(held[2], "started").await.unwrap();
    assert!(!leased(&sql, held[2]).await);

    holder.heartbeat().await.unwrap();
    assert!(!leased(&sql, held[0]).await, "held: acknowledged");
    assert!(!leased(&sql, held[1]).await, "held: acknowledged");
    assert!(
        leased(&sql, ids[3]).await,
        "running for the same executor but not held by this client: not acknowledged"
    );
    // Nothing held any more: a liveness heartbeat, which acknowledges nothing.
    holder.heartbeat().await.unwrap();
    assert!(leased(&sql, ids[3]).await);

    other.heartbeat().await.unwrap();
    assert!(!leased(&sql, ids[3]).await, "held by the other client");
    for id in held {
        holder.close(id, None).await.unwrap();
    }
    other.close(ids[3], None).await.unwrap();
}
