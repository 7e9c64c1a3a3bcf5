//! Claim leases (docs/RELIABILITY.md, defect 2): a coordinator's claim (`assign_batch`) carries
//! `lease_until`; close, fail, log and a heartbeat naming it acknowledge it; reap() gives back an
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
    // Given back: another executor gets them, and its heartbeat naming both acknowledges both
    // at once.
    let again = assign_batch(&client, "f", 5).await;
    assert_eq!(again, vec![ids[0], ids[4]]);
    client
        .execute("SELECT colony_assign.heartbeat('c', 'e', $1)", &[&again])
        .await
        .unwrap();
    assert!(
        row(&client, ids[0]).await.3,
        "e's heartbeat leaves f's leases"
    );
    assert!(
        row(&client, ids[4]).await.3,
        "e's heartbeat leaves f's leases"
    );
    client
        .execute("SELECT colony_assign.heartbeat('c', 'f')", &[])
        .await
        .unwrap();
    assert!(
        row(&client, ids[0]).await.3 && row(&client, ids[4]).await.3,
        "a heartbeat naming nothing acknowledges nothing"
    );
    client
        .execute("SELECT colony_assign.heartbeat('c', 'f', $1)", &[&again])
        .await
        .unwrap();
    assert!(!row(&client, ids[0]).await.3 && !row(&client, ids[4]).await.3);
    assert_eq!(expire_and_reap(&client).await, 0);
    assert_eq!(row(&client, ids[0]).await, (1, 0, Some("f".into()), false));
}

/// Whether process `id`, as process() shows it, carries a lease.
async fn shows_lease(client: &Client, id: i64) -> bool {
    client
        .query_one(
            "SELECT (colony_assign.process($1)).lease_until IS NOT NULL",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// How many scans of colony_assign.processes this transaction made so far.
async fn processes_scans(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables
             WHERE relid = 'colony_assign.processes'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_heartbeat_acknowledges_exactly_the_named_processes_running_for_its_executor() {
    let (_db, client) = setup("lease_heartbeat").await;
    add_executor(&client, "e", "t", None).await;
    add_executor(&client, "f", "t", None).await;
    let specs = vec![spec("t", json!({}), json!({"maxexectime": 600, "maxretries": 0})); 6];
    let ids = submit_many(&client, &specs).await;
    let mine = assign_batch(&client, "e", 4).await;
    assert_eq!(mine, ids[..4]);
    let theirs = assign_batch(&client, "f", 2).await;
    assert_eq!(theirs, ids[4..]);
    // A liveness heartbeat — no ids, NULL or an empty array — acknowledges nothing, and does
    // not even read the processes.
    for call in [
        "SELECT colony_assign.heartbeat('c', 'e')",
        "SELECT colony_assign.heartbeat('c', 'e', NULL)",
        "SELECT colony_assign.heartbeat('c', 'e', '{}')",
    ] {
        client.batch_execute("BEGIN").await.unwrap();
        let before = processes_scans(&client).await;
        client.execute(call, &[]).await.unwrap();
        assert_eq!(processes_scans(&client).await, before, "{call}");
        client.batch_execute("COMMIT").await.unwrap();
        for id in &ids {
            assert!(row(&client, *id).await.3, "{call}: process {id}");
        }
    }
    // ids[3] is closed, so its row keeps the column (close does not write it), but nobody sees
    // a lease on a process that is not RUNNING.
    client
        .execute("SELECT colony_assign.close($1, 'e', NULL)", &[&ids[3]])
        .await
        .unwrap();
    assert!(
        !shows_lease(&client, ids[3]).await,
        "closed: no lease shown"
    );
    assert!(
        shows_lease(&client, ids[0]).await,
        "running: its lease shown"
    );
    // e names two of its own, one of f's, its closed one and one that does not exist: only
    // its own two RUNNING ones are acknowledged, the rest is ignored.
    client
        .execute(
            "SELECT colony_assign.heartbeat('c', 'e', $1)",
            &[&vec![ids[0], ids[1], ids[4], ids[3], i64::MAX]],
        )
        .await
        .unwrap();
    assert_eq!(row(&client, ids[0]).await, (1, 0, Some("e".into()), false));
    assert_eq!(row(&client, ids[1]).await, (1, 0, Some("e".into()), false));
    assert_eq!(row(&client, ids[2]).await, (1, 0, Some("e".into()), true));
    assert_eq!(row(&client, ids[4]).await, (1, 0, Some("f".into()), true));
    assert!(!shows_lease(&client, ids[0]).await);
    // When the leases run out, what was not acknowledged goes back: ids[2] (its executor's
    // liveness heartbeats did not keep it), and f's two.
    assert_eq!(expire_and_reap(&client).await, 3);
    for id in [ids[2], ids[4], ids[5]] {
        assert_eq!(row(&client, id).await, (0, 0, None, false), "process {id}");
    }
    assert_eq!(row(&client, ids[0]).await.0, 1);
    assert_eq!(row(&client, ids[1]).await.0, 1);
    assert_eq!(row(&client, ids[3]).await.0, 2);
    // A heartbeat for processes it no longer has changes nothing.
    client
        .execute("SELECT colony_assign.heartbeat('c', 'e', $1)", &[&ids])
        .await
        .unwrap();
    for id in [ids[2], ids[4], ids[5]] {
        assert_eq!(row(&client, id).await, (0, 0, None, false), "process {id}");
    }
}
