//! Any number of replicas, no leader.

use super::{add_executor, count, setup};
use e2e::{HttpExecutor, eventually, spec};
use serde_json::{Value, json};
use std::collections::HashSet;

#[tokio::test]
async fn three_replicas_complete_10000_processes_each_assigned_once() {
    let (_db, client, coordinators) = setup("coord_replicas", 3, &[]).await;
    let specs: Vec<Value> = (0..10_000)
        .map(|i| spec("t", json!({}), json!({"priority": i % 5})))
        .collect();
    client
        .query(
            "SELECT colony_assign.submit_many('c', $1)",
            &[&Value::Array(specs)],
        )
        .await
        .unwrap();
    let mut workers = Vec::new();
    for (r, coordinator) in coordinators.iter().enumerate() {
        for k in 0..4 {
            let name = format!("e-r{r}-{k}");
            let executor = HttpExecutor::new(
                coordinator,
                &add_executor(&client, "c", &name, "t", None).await,
            );
            workers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    // A short timeout: when the backlog is gone, an empty answer ends the worker.
                    let batch = executor.assign("c", 1, 10).await;
                    if batch.is_empty() {
                        return mine;
                    }
                    for process in batch {
                        let id = process["id"].as_i64().unwrap();
                        executor.close(id, json!({"by": name})).await;
                        mine.push(id);
                    }
                }
            }));
        }
    }
    let mut seen = HashSet::new();
    for worker in workers {
        for id in worker.await.unwrap() {
            assert!(seen.insert(id), "process {id} assigned twice");
        }
    }
    assert_eq!(seen.len(), 10_000);
    eventually("stats agree", || async {
        count(&client, "SELECT succeeded FROM colony_assign.stats('c')").await == 10_000
    })
    .await;
    let mismatched = count(
        &client,
        "SELECT count(*) FROM colony_assign.processes WHERE output->>'by' IS DISTINCT FROM assigned_executor",
    )
    .await;
    assert_eq!(
        mismatched, 0,
        "each closed by the executor it was assigned to"
    );
}
