//! Failover between real replicas: one is killed while a submitter and an executor work
//! through it.

use super::{add_executor, count, setup, urls};
use colony_client::{Client, Close, Url};
use e2e::eventually;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Processes submitted in all; the replica dies after `KILL_AFTER` are acknowledged.
const TOTAL: usize = 400;
const KILL_AFTER: usize = 120;

fn work(seq: usize) -> Value {
    // maxexectime: a long-poll answer lost with the killed replica (claimed, never delivered,
    // nobody left to give it back) comes back after 5 s and is assigned again.
    json!({"funcname": "double", "args": [seq], "maxexectime": 5, "maxretries": 5,
           "conditions": {"executortype": "t"}})
}

/// Successful calls of one loop: when each ended and the replica that served it.
type Log = Arc<Mutex<Vec<(Instant, Url)>>>;

#[tokio::test]
async fn killing_the_replica_in_use_moves_submits_and_long_polls_to_the_other_within_2_s() {
    let (_db, sql, mut coordinators) = setup("client_failover", 2).await;
    let replicas = urls(&coordinators);
    // Both clients start on replica 0, the one that will be killed.
    let submitter = Client::builder(
        replicas.clone(),
        add_executor(&sql, "submitter", "submitter").await,
    )
    .start_at(0)
    .build()
    .unwrap();
    let executor = Client::builder(replicas.clone(), add_executor(&sql, "worker", "t").await)
        .start_at(0)
        .build()
        .unwrap();

    let acknowledged = Arc::new(Mutex::new(Vec::<(i64, usize)>::new()));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let closed_count = Arc::new(AtomicUsize::new(0));
    let submit_log: Log = Arc::default();
    let executor_log: Log = Arc::default();

    let submitting = {
        let (client, acknowledged, acked_count, log) = (
            submitter.clone(),
            acknowledged.clone(),
            acked_count.clone(),
            submit_log.clone(),
        );
        tokio::spawn(async move {
            let mut seq = 0;
            while seq < TOTAL {
                // Alternately one spec and three in one transaction.
                let ids = if seq % 4 == 0 && seq + 3 <= TOTAL {
                    let specs: Vec<Value> = (seq..seq + 3).map(work).collect();
                    client.submit_many("c", &specs).await
                } else {
                    client.submit("c", &work(seq)).await.map(|id| vec![id])
                }
                .unwrap_or_else(|e| panic!("submit at {seq} failed: {e}"));
                log.lock()
                    .unwrap()
                    .push((Instant::now(), client.current_replica()));
                let mut acked = acknowledged.lock().unwrap();
                for id in ids {
                    acked.push((id, seq));
                    seq += 1;
                }
                acked_count.store(acked.len(), Ordering::SeqCst);
            }
        })
    };

    let executing = {
        let (client, closed_count, log) =
            (executor.clone(), closed_count.clone(), executor_log.clone());
        tokio::spawn(async move {
            let mut closed: Vec<i64> = Vec::new();
            while closed.len() < TOTAL {
                let batch = client
                    .assign("c", Duration::from_secs(1), 3)
                    .await
                    .unwrap_or_else(|e| panic!("assign failed: {e}"));
                log.lock()
                    .unwrap()
                    .push((Instant::now(), client.current_replica()));
                let doubled = |p: &colony_client::Process| json!({"double": p.args()[0].as_i64().unwrap() * 2});
                match batch.as_slice() {
                    [] => {}
                    [one] => {
                        client
                            .close(one.id, Some(doubled(one)))
                            .await
                            .unwrap_or_else(|e| panic!("close {} failed: {e}", one.id));
                        closed.push(one.id);
                    }
                    several => {
                        let closes: Vec<Close> = several
                            .iter()
                            .map(|p| Close {
                                id: p.id,
                                output: Some(doubled(p)),
                            })
                            .collect();
                        for result in client
                            .close_many(&closes)
                            .await
                            .unwrap_or_else(|e| panic!("close_many failed: {e}"))
                        {
                            assert!(result.closed, "{result:?}");
                            closed.push(result.id);
                        }
                    }
                }
                if !batch.is_empty() {
                    log.lock()
                        .unwrap()
                        .push((Instant::now(), client.current_replica()));
                }
                closed_count.store(closed.len(), Ordering::SeqCst);
            }
            closed
        })
    };

    eventually("the loops have made progress through replica 0", || async {
        acked_count.load(Ordering::SeqCst) >= KILL_AFTER
            && closed_count.load(Ordering::SeqCst) >= KILL_AFTER / 3
    })
    .await;
    assert_eq!(submitter.current_replica(), replicas[0]);
    assert_eq!(executor.current_replica(), replicas[0]);
    // SIGKILL (the harness kills on drop): no graceful answers, connections just break.
    let killed_at = Instant::now();
    drop(coordinators.remove(0));

    submitting.await.expect("the submitter never saw an error");
    let closed = tokio::time::timeout(e2e::DEADLINE, executing)
        .await
        .expect("every process closed in time")
        .expect("the executor never saw an error");

    // Calls resumed on the other replica within 2 s of the kill.
    for (who, log) in [("submitter", &submit_log), ("executor", &executor_log)] {
        let log = log.lock().unwrap();
        assert!(
            log.iter()
                .all(|(at, replica)| *at > killed_at || *replica == replicas[0]),
            "{who} used replica 1 before the kill"
        );
        let (resumed, _) = log
            .iter()
            .find(|(at, replica)| *at > killed_at && *replica == replicas[1])
            .unwrap_or_else(|| panic!("{who} never resumed on replica 1"));
        let took = resumed.duration_since(killed_at);
        eprintln!("{who}: first successful call on the surviving replica {took:?} after the kill");
        assert!(took < Duration::from_secs(2), "{who} took {took:?}");
        assert_eq!(log.last().unwrap().1, replicas[1]);
    }

    // Every acknowledged submit exists exactly once (retried submits carried their key).
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), TOTAL);
    let ids: HashSet<i64> = acknowledged.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), TOTAL, "an id acknowledged twice");
    assert_eq!(
        count(&sql, "SELECT count(*) FROM colony_assign.processes").await,
        TOTAL as i64,
        "a submit was applied twice (or one never acknowledged was applied). A submit cut off \
         by the kill still commits in the dead replica's database session; its retry carries \
         the same Idempotency-Key and must get the first call's ids: does the coordinator pass \
         the header to colony_assign.submit_many()?"
    );
    assert_eq!(
        count(
            &sql,
            "SELECT count(*) FROM (SELECT spec->'args'->0 FROM colony_assign.processes
              GROUP BY 1 HAVING count(*) <> 1) dup"
        )
        .await,
        0
    );
    // Every process closed exactly once: each id closed by the executor once, and each SUCCESS
    // with the output its close sent.
    let closed_set: HashSet<i64> = closed.iter().copied().collect();
    assert_eq!(closed.len(), closed_set.len(), "a process was closed twice");
    assert_eq!(closed_set, ids);
    eventually("every process SUCCESS with its output", || async {
        count(
            &sql,
            "SELECT count(*) FROM colony_assign.processes
              WHERE state = 2 AND output = jsonb_build_object('double', (spec->'args'->>0)::int * 2)",
        )
        .await
            == TOTAL as i64
    })
    .await;
}
