//! Claim leases (docs/RELIABILITY.md, defect 2): a coordinator's claim (`assign_batch`) carries
//! `lease_until`; close, fail, log and heartbeat acknowledge it; reap() gives back an
//! unacknowledged claim whose lease ran out — WAITING, no retry counted, its key notified.
//! SQL-direct `assign()` sets no lease.

use super::{add_executor, assign, setup, submit_many};
use e2e::spec;
use serde_json::json;
use tokio_postgres::Client;

/// Process ids one assign_batch call claims for executor `e`.
async fn assign_batch(client: &Client, executor: &str, max: i32) -> Vec<i64> {
    client
        .query(
            "SELECT (b.process).id FROM colony_assign.assign_batch(ARRAY['c'], ARRAY[$1::text], ARRAY[$2::int4]) b
             WHERE b.sqlstate IS NULL",
            &[&executor, &max],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// (state, retries, assigned_executor, has a lease) of process `id`.
async fn row(client: &Client, id: i64) -> (i32, i32, Option<String>, bool) {
    let r = client
        .query_one(
            "SELECT state, retries, assigned_executor, lease_until IS NOT NULL
             FROM colony_assign.processes WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// Moves every lease into the past (instead of sleeping past it) and reaps.
async fn expire_and_reap(client: &Client) -> i64 {
    client
        .execute(
            "UPDATE colony_assign.processes SET lease_until = now() - interval '1 s'
             WHERE lease_until IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    client
        .query_one("SELECT requeued FROM colony_assign.reap()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn sql_direct_assign_sets_no_lease_and_a_coordinator_claim_sets_the_colonys() {
    let (_db, client) = setup("lease_direct").await;
    add_executor(&client, "e", "t", None).await;
    client
        .execute(
            "SELECT colony_assign.configure('c', claim_lease => interval '7 seconds')",
            &[],
        )
        .await
        .unwrap();
    let ids = submit_many(
        &client,
        &vec![spec("t", json!({}), json!({"maxexectime": 60})); 2],
    )
    .await;
    let direct = assign(&client, "e", 1).await;
    assert_eq!(direct, vec![ids[0]]);
    assert_eq!(row(&client, ids[0]).await, (1, 0, Some("e".into()), false));
    let batched = assign_batch(&client, "e", 1).await;
    assert_eq!(batched, vec![ids[1]]);
    let lease: f64 = client
        .query_one(
            "SELECT extract(epoch FROM lease_until - started_at)::float8
             FROM colony_assign.processes WHERE id = $1",
            &[&ids[1]],
        )
        .await
        .unwrap()
        .get(0);
    assert!((lease - 7.0).abs() < 1e-6, "lease {lease} s");
    // Nothing to give back: the direct claim has no lease, the other has not run out.
    let requeued: i64 = client
        .query_one("SELECT requeued FROM colony_assign.reap()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(requeued, 0);
    // configure() refuses a lease that is not positive or over a day.
    for bad in ["0 seconds", "-1 second", "2 days"] {
        let e = client
            .execute(
                "SELECT colony_assign.configure('c', claim_lease => $1::text::interval)",
                &[&bad],
            )
            .await
            .unwrap_err();
        assert_eq!(e.code().unwrap().code(), "22023", "{bad}");
    }
}

#[tokio::test]
async fn an_unacknowledged_claim_goes_back_after_its_lease_and_acknowledged_ones_stay() {
    let (_db, client) = setup("lease_reap").await;
    add_executor(&client, "e", "t", None).await;
    add_executor(&client, "f", "t", None).await;
    let specs = vec![spec("t", json!({}), json!({"maxexectime": 600, "maxretries": 0})); 5];
    let ids = submit_many(&client, &specs).await;
    let claimed = assign_batch(&client, "e", 5).await;
    assert_eq!(claimed, ids);
    for id in &ids {
        assert_eq!(row(&client, *id).await, (1, 0, Some("e".into()), true));
    }
    // ids[0] is never acknowledged; ids[1] is logged to; ids[2] closed; ids[3] failed.
    client
        .execute("SELECT colony_assign.log($1, 'e', 'started')", &[&ids[1]])
        .await
        .unwrap();
    assert!(!row(&client, ids[1]).await.3, "log acknowledges");
    client
        .execute("SELECT colony_assign.close($1, 'e', NULL)", &[&ids[2]])
        .await
        .unwrap();
    client
        .execute(
            "SELECT colony_assign.fail($1, 'e', ARRAY['no'])",
            &[&ids[3]],
        )
        .await
        .unwrap();
    // ids[4] is not acknowledged either. (That the requeue wakes the key is shown over HTTP:
    // tests/coordinator/lease.rs, a parked executor gets the process.)
    let requeued = expire_and_reap(&client).await;
    assert_eq!(requeued, 2, "ids[0] and ids[4] went back");
    for id in [ids[0], ids[4]] {
        assert_eq!(row(&client, id).await, (0, 0, None, false), "process {id}");
    }
    assert_eq!(row(&client, ids[1]).await.0, 1);
    assert_eq!(row(&client, ids[2]).await.0, 2);
    assert_eq!(row(&client, ids[3]).await.0, 3);
    // Given back: another executor gets them, and its heartbeat acknowledges both at once.
    let again = assign_batch(&client, "f", 5).await;
    assert_eq!(again, vec![ids[0], ids[4]]);
    client
        .execute("SELECT colony_assign.heartbeat('c', 'e')", &[])
        .await
        .unwrap();
    assert!(
        row(&client, ids[0]).await.3,
        "e's heartbeat leaves f's leases"
    );
    client
        .execute("SELECT colony_assign.heartbeat('c', 'f')", &[])
        .await
        .unwrap();
    assert!(!row(&client, ids[0]).await.3 && !row(&client, ids[4]).await.3);
    assert_eq!(expire_and_reap(&client).await, 0);
    assert_eq!(row(&client, ids[0]).await, (1, 0, Some("f".into()), false));
}
