//! Claim leases over HTTP (docs/RELIABILITY.md, defect 2): a claim a coordinator hands out
//! that its executor never acknowledges goes back to WAITING when its lease runs out — no
//! retry spent — and is assigned to another executor; a heartbeat keeps a long-running claim.

use super::{add_executor, setup};
use colony_client::{Client, Url};
use e2e::{HttpExecutor, spec};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_postgres::Client as Sql;

const LEASE: Duration = Duration::from_secs(2);

async fn with_lease(sql: &Sql) {
    sql.execute(
        "SELECT colony_assign.configure('c', claim_lease => interval '2 seconds')",
        &[],
    )
    .await
    .unwrap();
}

async fn submit(sql: &Sql) -> i64 {
    sql.query_one(
        "SELECT colony_assign.submit('c', $1)",
        &[&spec(
            "t",
            json!({}),
            json!({"maxexectime": 600, "maxretries": 0}),
        )],
    )
    .await
    .unwrap()
    .get(0)
}

/// (state, retries, assigned_executor) of process `id`.
async fn row(sql: &Sql, id: i64) -> (i32, i32, Option<String>) {
    let r = sql
        .query_one(
            "SELECT state, retries, assigned_executor FROM colony_assign.processes WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// Whether process `id` still carries a claim lease.
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
async fn a_claim_never_acknowledged_goes_back_after_its_lease_unretried_to_another_executor() {
    let (_db, sql, coordinators) =
        setup("lease_http_expiry", 1, &["--reap-interval-ms", "200"]).await;
    with_lease(&sql).await;
    let coordinator = &coordinators[0];
    let lost = HttpExecutor::new(
        coordinator,
        &add_executor(&sql, "c", "lost", "t", None).await,
    );
    let other = HttpExecutor::new(
        coordinator,
        &add_executor(&sql, "c", "other", "t", None).await,
    );
    let id = submit(&sql).await;
    // "lost" receives the claim but never acknowledges it (as if the answer had died in a cut).
    let got = lost.assign("c", 5, 1).await;
    let claimed_at = Instant::now();
    assert_eq!(got[0]["id"], json!(id));
    assert!(got[0]["lease_until"].is_string(), "{}", got[0]);
    assert_eq!(row(&sql, id).await, (1, 0, Some("lost".into())));
    // "other" is parked when the lease runs out: the requeue wakes it.
    let again = other.assign("c", 10, 1).await;
    let after = claimed_at.elapsed();
    assert_eq!(again.len(), 1, "the process came back within the long-poll");
    assert_eq!(again[0]["id"], json!(id));
    assert_eq!(again[0]["retries"], json!(0), "no retry spent");
    assert!(
        after >= LEASE,
        "given back after {after:?}, before its lease ran out"
    );
    assert!(
        after < LEASE + Duration::from_secs(3),
        "given back {after:?} after the claim"
    );
    assert_eq!(row(&sql, id).await, (1, 0, Some("other".into())));
    other.close(id, json!("done")).await;
    assert_eq!(row(&sql, id).await, (2, 0, Some("other".into())));
}

#[tokio::test]
async fn a_heartbeat_keeps_a_long_running_claim() {
    let (_db, sql, coordinators) =
        setup("lease_http_heartbeat", 1, &["--reap-interval-ms", "200"]).await;
    with_lease(&sql).await;
    let coordinator = &coordinators[0];
    // A raw executor that heartbeats itself at once.
    let raw = HttpExecutor::new(
        coordinator,
        &add_executor(&sql, "c", "raw", "t", None).await,
    );
    let first = submit(&sql).await;
    assert_eq!(raw.assign("c", 5, 1).await[0]["id"], json!(first));
    let beat = |body: Option<&'static str>| {
        let request = raw
            .http
            .post(coordinator.url("/v1/executors/heartbeat"))
            .bearer_auth(&raw.token);
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(body),
            None => request,
        };
        async move { request.send().await.unwrap() }
    };
    // A bare heartbeat keeps the executor alive but acknowledges nothing; a body it does not
    // know is refused.
    assert_eq!(beat(None).await.status(), 204);
    assert_eq!(beat(Some("{}")).await.status(), 204);
    assert!(
        leased(&sql, first).await,
        "a bare heartbeat acknowledges nothing"
    );
    for bad in [
        r#"{"processes": [1], "process": 1}"#,
        r#"{"processes": "1"}"#,
        r#"[1]"#,
        "{",
    ] {
        let answer = beat(Some(bad)).await;
        assert_eq!(answer.status(), 400, "{bad}");
        let error: serde_json::Value = answer.json().await.unwrap();
        assert!(error["error"]["message"].is_string(), "{bad}: {error}");
    }
    assert!(leased(&sql, first).await);
    // Naming the process acknowledges it.
    let body = json!({"processes": [first]}).to_string();
    let beat = raw
        .http
        .post(coordinator.url("/v1/executors/heartbeat"))
        .bearer_auth(&raw.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), 204);
    assert!(!leased(&sql, first).await, "the heartbeat named it");
    // colony-client, which heartbeats by itself half a lease after receiving work it still
    // holds.
    let token = add_executor(&sql, "c", "client", "t", None).await;
    let client = Client::builder(vec![Url::parse(&coordinator.base).unwrap()], token)
        .build()
        .unwrap();
    let second = submit(&sql).await;
    let got = client.assign("c", Duration::from_secs(5), 1).await.unwrap();
    assert_eq!(got[0].id, second);
    // Both run for three leases.
    tokio::time::sleep(LEASE * 3).await;
    assert_eq!(row(&sql, first).await, (1, 0, Some("raw".into())));
    assert_eq!(row(&sql, second).await, (1, 0, Some("client".into())));
    raw.close(first, json!("done")).await;
    client.close(second, Some(json!("done"))).await.unwrap();
    assert_eq!(row(&sql, first).await.0, 2);
    assert_eq!(row(&sql, second).await.0, 2);
}
