//! Exact wake-ups (the seed's location-aware routing): a notification wakes only executors that
//! can take the work, whatever replica they are parked on.

use super::{add_executor, count, setup, total};
use e2e::{HttpExecutor, eventually, spec};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One long-polling executor that records what it receives and closes it.
fn run_executor(
    executor: HttpExecutor,
    name: String,
    location: Option<String>,
    received: Arc<Mutex<Vec<(i64, String)>>>,
    violations: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for process in executor.assign("c", 30, 1).await {
                let id = process["id"].as_i64().unwrap();
                let got_location = process["location"].as_str().map(str::to_owned);
                if got_location.is_some() && got_location != location {
                    violations.lock().unwrap().push(format!(
                        "{name} at {location:?} got {id} for {got_location:?}"
                    ));
                }
                if let Some(names) = process["executor_names"].as_array()
                    && !names.iter().any(|n| n.as_str() == Some(&name))
                {
                    violations
                        .lock()
                        .unwrap()
                        .push(format!("{name} got {id} targeted at {names:?}"));
                }
                received.lock().unwrap().push((id, name.clone()));
                executor.close(id, json!({"by": name})).await;
            }
        }
    })
}

#[tokio::test]
async fn one_by_one_location_work_reaches_only_its_location_across_three_replicas() {
    let (_db, client, coordinators) = setup("coord_routing", 3, &[]).await;
    let locations = ["edge", "cloud", "hpc", "lab"];
    let received = Arc::new(Mutex::new(Vec::new()));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let mut executors = Vec::new();
    // 2 executors per location per replica: 24 idle executors of one type.
    for (r, coordinator) in coordinators.iter().enumerate() {
        for location in locations {
            for k in 0..2 {
                let name = format!("{location}-r{r}-{k}");
                let token = add_executor(&client, "c", &name, "t", Some(location)).await;
                executors.push(run_executor(
                    HttpExecutor::new(coordinator, &token),
                    name,
                    Some(location.to_owned()),
                    received.clone(),
                    violations.clone(),
                ));
            }
        }
    }
    eventually("all 24 executors parked", || async {
        total(
            &coordinators,
            "colony_parked_waiters",
            &[("kind", "location")],
        )
        .await
            == 24.0
    })
    .await;

    for i in 0..1000 {
        let location = locations[i % locations.len()];
        client
            .query_one(
                "SELECT colony_assign.submit('c', $1)",
                &[&spec("t", json!({"locationname": location}), json!({}))],
            )
            .await
            .unwrap();
    }
    eventually("all 1000 processes done", || async {
        count(&client, "SELECT succeeded FROM colony_assign.stats('c')").await == 1000
    })
    .await;
    for executor in executors {
        executor.abort();
    }

    assert_eq!(*violations.lock().unwrap(), Vec::<String>::new());
    let received = received.lock().unwrap().clone();
    let mut per_id: HashMap<i64, usize> = HashMap::new();
    for (id, _) in received.iter() {
        *per_id.entry(*id).or_default() += 1;
    }
    assert_eq!(per_id.len(), 1000);
    assert!(
        per_id.values().all(|n| *n == 1),
        "each process received exactly once"
    );
    assert_eq!(
        total(&coordinators, "colony_wrong_wakes_total", &[]).await,
        0.0
    );
    // Every replica heard the notifications, and wakes went only to location keys.
    for coordinator in &coordinators {
        assert!(
            coordinator
                .metric(
                    "colony_notifications_received_total",
                    &[("kind", "location")]
                )
                .await
                >= 1.0
        );
    }
    assert_eq!(
        total(
            &coordinators,
            "colony_wakes_total",
            &[("kind", "broadcast")]
        )
        .await,
        0.0
    );
    assert_eq!(
        total(&coordinators, "colony_wakes_total", &[("kind", "name")]).await,
        0.0
    );
}

#[tokio::test]
async fn broadcast_work_goes_anywhere_and_named_work_only_to_its_executor() {
    let (_db, client, coordinators) = setup("coord_routing_kinds", 2, &[]).await;
    let received = Arc::new(Mutex::new(Vec::new()));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let mut executors = Vec::new();
    let mut names = Vec::new();
    for (r, coordinator) in coordinators.iter().enumerate() {
        for (k, location) in [Some("edge"), None, Some("hpc")].into_iter().enumerate() {
            let name = format!("e-r{r}-{k}");
            let token = add_executor(&client, "c", &name, "t", location).await;
            names.push(name.clone());
            executors.push(run_executor(
                HttpExecutor::new(coordinator, &token),
                name,
                location.map(str::to_owned),
                received.clone(),
                violations.clone(),
            ));
        }
    }
    eventually("all 6 executors parked", || async {
        total(
            &coordinators,
            "colony_parked_waiters",
            &[("kind", "broadcast")],
        )
        .await
            == 6.0
    })
    .await;
    for i in 0..60 {
        let conditions = if i % 2 == 0 {
            json!({})
        } else {
            json!({"executornames": [names[i % names.len()]]})
        };
        client
            .query_one(
                "SELECT colony_assign.submit('c', $1)",
                &[&spec("t", conditions, json!({}))],
            )
            .await
            .unwrap();
    }
    eventually("all 60 processes done", || async {
        count(&client, "SELECT succeeded FROM colony_assign.stats('c')").await == 60
    })
    .await;
    for executor in executors {
        executor.abort();
    }
    assert_eq!(*violations.lock().unwrap(), Vec::<String>::new());
    assert_eq!(received.lock().unwrap().len(), 60);
    assert_eq!(
        total(&coordinators, "colony_wrong_wakes_total", &[]).await,
        0.0
    );
    assert!(total(&coordinators, "colony_wakes_total", &[("kind", "name")]).await >= 1.0);
    assert!(
        total(
            &coordinators,
            "colony_wakes_total",
            &[("kind", "broadcast")]
        )
        .await
            >= 1.0
    );
}
