//! Cache coordination: what a replica caches about tokens (the executor or admin a token belongs
//! to) is voided on every replica by the `ca_control` channel, not by waiting out the cache's TTL.
//! The replicas here run with a TTL of an hour, so only the control event can make them refuse a
//! token within the test.
//!
//! The goal is "within 100 ms" (issue 12, item 5); the bench scenario "invalidation" measures it
//! (p50, p99, max over hundreds of removals). Each removal here must be refused everywhere within
//! 2 s, which a loaded 2-core machine cannot flake on and an hour-long TTL cannot meet: that shows it
//! is the event that makes every replica refuse. The 100 ms goal is asserted on the median of
//! several removals ([`every_replica_refuses_a_removed_token_within_100_ms`]), so one removal
//! delayed by a busy test machine does not fail the test, and a slow path does.

use super::{add_executor, setup};
use e2e::{Coordinator, HttpExecutor, eventually, within};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How long every replica may take to refuse a voided token in these tests (goal: 100 ms).
const REFUSED_WITHIN: Duration = Duration::from_secs(2);

/// The goal of issue 12, item 5: every replica refuses a removed executor's token within this.
const GOAL: Duration = Duration::from_millis(100);

/// Token cache TTL of the replicas: far longer than any test, so a refusal within
/// [`REFUSED_WITHIN`] can only come from the control event.
const TTL_ARGS: &[&str] = &["--token-cache-s", "3600"];

/// Status of `GET /v1/colonies/{colony}/stats` with `token`: 200 while the replica accepts the
/// token (from its cache: the stats query does not check who asks), 401 once it refuses it.
async fn stats_status(coordinator: &Coordinator, colony: &str, token: &str) -> u16 {
    coordinator
        .http
        .get(coordinator.url(&format!("/v1/colonies/{colony}/stats")))
        .bearer_auth(token)
        .send()
        .await
        .expect("stats request")
        .status()
        .as_u16()
}

/// Every replica answers `token` with `status`.
async fn all_answer(coordinators: &[Coordinator], colony: &str, token: &str, status: u16) {
    for (i, c) in coordinators.iter().enumerate() {
        assert_eq!(
            stats_status(c, colony, token).await,
            status,
            "replica {i}, colony {colony}"
        );
    }
}

/// Waits (up to [`REFUSED_WITHIN`], on all replicas at once) until every replica refuses
/// `token`; panics naming the replicas that still accept it.
async fn refused_by_every_replica(coordinators: &[Coordinator], colony: &str, token: &str) {
    let checks = coordinators.iter().map(|c| {
        within(REFUSED_WITHIN, move || async move {
            stats_status(c, colony, token).await == 401
        })
    });
    let refused = futures_util::future::join_all(checks).await;
    let late: Vec<usize> = (0..refused.len()).filter(|&i| !refused[i]).collect();
    assert!(
        late.is_empty(),
        "replicas {late:?} still accepted the voided token after {REFUSED_WITHIN:?}"
    );
}

async fn add_admin(client: &Client, name: &str) -> String {
    client
        .query_one("SELECT colony_assign.add_admin($1)", &[&name])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_removed_executors_token_is_refused_by_every_replica() {
    let (_db, client, coordinators) = setup("coord_invalidation_executor", 3, TTL_ARGS).await;
    let gone = add_executor(&client, "c", "gone", "t", None).await;
    let stays = add_executor(&client, "c", "stays", "t", None).await;
    // Every replica authenticates both tokens once, and from then on trusts its cache.
    all_answer(&coordinators, "c", &gone, 200).await;
    all_answer(&coordinators, "c", &stays, 200).await;
    // The removed executor also waits in a long-poll on every replica: those must answer too.
    let mut parked = Vec::new();
    for c in &coordinators {
        let executor = HttpExecutor::new(c, &gone);
        parked.push(tokio::spawn(async move {
            executor
                .http
                .post(format!("{}/v1/colonies/c/assign?timeout=30", executor.base))
                .bearer_auth(&executor.token)
                .send()
                .await
                .expect("long-poll")
                .status()
                .as_u16()
        }));
    }
    for (i, c) in coordinators.iter().enumerate() {
        eventually(&format!("the long-poll parked on replica {i}"), || async {
            c.metric("colony_parked_waiters", &[("kind", "name")]).await >= 1.0
        })
        .await;
    }

    client
        .execute("SELECT colony_assign.remove_executor('c', 'gone')", &[])
        .await
        .unwrap();
    refused_by_every_replica(&coordinators, "c", &gone).await;
    for (i, long_poll) in parked.into_iter().enumerate() {
        let status = tokio::time::timeout(REFUSED_WITHIN, long_poll)
            .await
            .unwrap_or_else(|_| panic!("replica {i}'s parked long-poll did not answer"))
            .unwrap();
        assert_eq!(status, 401, "replica {i}'s parked long-poll");
    }
    // Exactly the removed executor: its colleague's cached token still works everywhere.
    all_answer(&coordinators, "c", &stays, 200).await;

    // Re-keyed (registered again under the same name): the new token works on every replica,
    // the old one stays refused.
    let rekeyed = add_executor(&client, "c", "gone", "t", None).await;
    all_answer(&coordinators, "c", &rekeyed, 200).await;
    all_answer(&coordinators, "c", &gone, 401).await;
}

#[tokio::test]
async fn removing_a_colony_or_an_admin_voids_their_tokens_on_every_replica() {
    let (_db, client, coordinators) = setup("coord_invalidation_colony", 3, TTL_ARGS).await;
    client
        .execute("SELECT colony_assign.add_colony('d')", &[])
        .await
        .unwrap();
    let in_d = add_executor(&client, "d", "e", "t", None).await;
    let in_c = add_executor(&client, "c", "e", "t", None).await;
    let root = add_admin(&client, "root").await;
    let ops = add_admin(&client, "ops").await;
    all_answer(&coordinators, "d", &in_d, 200).await;
    all_answer(&coordinators, "c", &in_c, 200).await;
    all_answer(&coordinators, "c", &root, 200).await;
    all_answer(&coordinators, "c", &ops, 200).await;

    client
        .execute("SELECT colony_assign.remove_colony('d')", &[])
        .await
        .unwrap();
    refused_by_every_replica(&coordinators, "d", &in_d).await;
    // The executor of the same name in another colony is another executor.
    all_answer(&coordinators, "c", &in_c, 200).await;

    client
        .execute("SELECT colony_assign.remove_admin('root')", &[])
        .await
        .unwrap();
    refused_by_every_replica(&coordinators, "c", &root).await;
    all_answer(&coordinators, "c", &ops, 200).await;
}

/// Per replica, how long after `since` it first refused `token` (a request every 2 ms, all
/// replicas at once); None for a replica that still accepted it after [`REFUSED_WITHIN`].
async fn refusal_times(
    coordinators: &[Coordinator],
    colony: &str,
    token: &str,
    since: Instant,
) -> Vec<Option<Duration>> {
    let probes = coordinators.iter().map(|c| async move {
        while since.elapsed() < REFUSED_WITHIN {
            if stats_status(c, colony, token).await == 401 {
                return Some(since.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    });
    futures_util::future::join_all(probes).await
}

#[tokio::test]
async fn every_replica_refuses_a_removed_token_within_100_ms() {
    const REMOVALS: usize = 7;
    let (_db, client, coordinators) = setup("coord_invalidation_timed", 3, TTL_ARGS).await;
    let mut slowest = Vec::new();
    for i in 0..REMOVALS {
        let name = format!("timed-{i}");
        let token = add_executor(&client, "c", &name, "t", None).await;
        all_answer(&coordinators, "c", &token, 200).await;
        client
            .execute("SELECT colony_assign.remove_executor('c', $1)", &[&name])
            .await
            .unwrap();
        // From the moment the removal's commit is acknowledged.
        let committed = Instant::now();
        let times = refusal_times(&coordinators, "c", &token, committed).await;
        let late: Vec<usize> = (0..times.len()).filter(|&r| times[r].is_none()).collect();
        assert!(
            late.is_empty(),
            "removal {i}: replicas {late:?} still accepted the token after {REFUSED_WITHIN:?}"
        );
        let all: Vec<Duration> = times.into_iter().flatten().collect();
        eprintln!("removal {i}: refused by the 3 replicas after {all:?}");
        slowest.push(all.into_iter().max().unwrap());
    }
    slowest.sort();
    let median = slowest[REMOVALS / 2];
    assert!(
        median < GOAL,
        "the last replica refused a removed token after {median:?} (median of {REMOVALS} \
         removals; each: {slowest:?}), goal {GOAL:?}"
    );
}
