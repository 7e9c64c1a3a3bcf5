//! The process lifecycle through the coordinator: workflows, heartbeats, logs, reaping, resume.

use super::{add_executor, count, setup};
use e2e::{Coordinator, HttpExecutor, TestDb, eventually, spec};
use serde_json::{Value, json};

#[tokio::test]
async fn workflows_heartbeats_and_logs_over_http() {
    let (_db, client, coordinators) = setup("coord_workflow", 1, &[]).await;
    let coordinator = &coordinators[0];
    let token = add_executor(&client, "c", "e", "t", None).await;
    let executor = HttpExecutor::new(coordinator, &token);
    let node = |name: &str, deps: &[&str]| {
        let mut s = spec(
            "t",
            json!({"dependencies": deps}),
            json!({"nodename": name}),
        );
        s["funcname"] = json!(name);
        s
    };
    let response = executor
        .http
        .post(coordinator.url("/v1/colonies/c/workflows"))
        .bearer_auth(&token)
        .json(&json!([
            node("fetch", &[]),
            node("left", &["fetch"]),
            node("right", &["fetch"]),
            node("join", &["left", "right"])
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let workflow = response.json::<Value>().await.unwrap()["workflow_id"]
        .as_i64()
        .unwrap();

    let mut order = Vec::new();
    while order.len() < 4 {
        for process in executor.assign("c", 10, 4).await {
            let id = process["id"].as_i64().unwrap();
            let name = process["funcname"].as_str().unwrap().to_owned();
            let logged = executor
                .http
                .post(coordinator.url(&format!("/v1/processes/{id}/logs")))
                .bearer_auth(&token)
                .json(&json!({"message": format!("running {name}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(logged.status(), 204);
            let beat = executor
                .http
                .post(coordinator.url("/v1/executors/heartbeat"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(beat.status(), 204);
            if name == "join" {
                assert_eq!(
                    process["input"],
                    json!([{"done": "left"}, {"done": "right"}])
                );
            }
            executor.close(id, json!({"done": name})).await;
            order.push((name, id));
        }
    }
    assert_eq!(order[0].0, "fetch");
    assert_eq!(order[3].0, "join");
    let graph: Value = executor
        .http
        .get(coordinator.url(&format!("/v1/workflows/{workflow}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(graph["state"], 2);
    let logs: Value = executor
        .http
        .get(coordinator.url(&format!("/v1/processes/{}/logs", order[3].1)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(logs[0]["message"], "running join");
    assert_eq!(logs[0]["executor"], "e");

    // Batched closes over HTTP: per-item results.
    let ids: Vec<i64> = executor
        .http
        .post(coordinator.url("/v1/colonies/c/processes"))
        .bearer_auth(&token)
        .json(&json!([
            spec("t", json!({}), json!({})),
            spec("t", json!({}), json!({}))
        ]))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(executor.assign("c", 5, 10).await.len(), 2);
    let results: Value = executor
        .http
        .post(coordinator.url("/v1/processes/close"))
        .bearer_auth(&token)
        .json(&json!([{"id": ids[0], "output": 1}, {"id": ids[1]}, {"id": order[0].1}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        results["results"],
        json!([
            {"id": order[0].1, "closed": false, "error": "not running (it is SUCCESS)"},
            {"id": ids[0], "closed": true},
            {"id": ids[1], "closed": true}
        ])
    );

    // A bad workflow is a 400 naming the problem, and writes nothing.
    let before = e2e::fingerprint(&client).await;
    let response = executor
        .http
        .post(coordinator.url("/v1/colonies/c/workflows"))
        .bearer_auth(&token)
        .json(&json!([node("a", &["b"]), node("b", &["a"])]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("cycle"),
        "{body}"
    );
    assert_eq!(e2e::fingerprint(&client).await, before);
}

#[tokio::test]
async fn the_background_worker_and_three_replicas_reap_each_process_once() {
    let db = TestDb::with_reaper("coord_reapers", 50).await;
    let client = db.client().await;
    client
        .execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    let mut coordinators = Vec::new();
    for r in 0..3 {
        coordinators.push(
            Coordinator::start(
                &db,
                &format!("coord_reapers-r{r}"),
                &["--reap", "always", "--reap-interval-ms", "50"],
            )
            .await,
        );
    }
    db.wait_for_worker().await;
    add_executor(&client, "c", "e", "t", None).await;
    let mut specs = Vec::new();
    for retries in [2, 0] {
        specs.extend((0..500).map(|_| {
            spec(
                "t",
                json!({}),
                json!({"maxexectime": 600, "maxretries": retries}),
            )
        }));
    }
    client
        .query(
            "SELECT colony_assign.submit_many('c', $1)",
            &[&Value::Array(specs)],
        )
        .await
        .unwrap();
    client
        .query("SELECT 1 FROM colony_assign.assign('c', 'e', 1000)", &[])
        .await
        .unwrap();
    let waiting: Vec<Value> = (0..500)
        .map(|_| spec("t", json!({}), json!({"maxwaittime": 600})))
        .collect();
    client
        .query(
            "SELECT colony_assign.submit_many('c', $1)",
            &[&Value::Array(waiting)],
        )
        .await
        .unwrap();
    // All deadlines pass at once, in front of four reapers.
    client
        .batch_execute(
            "BEGIN;
             UPDATE colony_assign.processes SET exec_deadline = now() - interval '1 s' WHERE state = 1;
             UPDATE colony_assign.processes SET wait_deadline = now() - interval '1 s' WHERE state = 0;
             COMMIT;",
        )
        .await
        .unwrap();
    eventually("every overdue process handled", || async {
        count(
            &client,
            "SELECT count(*) FROM colony_assign.processes
             WHERE (state = 1 AND exec_deadline IS NOT NULL) OR (state = 0 AND wait_deadline IS NOT NULL)",
        )
        .await
            == 0
    })
    .await;
    // Handled exactly once: requeued ones have one retry, failed ones one error.
    let summary: Vec<(i32, i32, i32, i64)> = client
        .query(
            "SELECT state, retries, coalesce(cardinality(errors), 0), count(*) FROM colony_assign.processes
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(summary, vec![(0, 1, 0, 500), (3, 0, 1, 1000)]);
    drop(coordinators);
}

#[tokio::test]
async fn resume_wakes_parked_executors_on_every_replica() {
    // Catch-up is pushed far out, so only resume()'s own notification can wake them in time.
    let (_db, client, coordinators) =
        setup("coord_resume", 2, &["--catchup-interval-ms", "3600000"]).await;
    client
        .execute("SELECT colony_assign.pause('c')", &[])
        .await
        .unwrap();
    let mut polls = Vec::new();
    for (r, coordinator) in coordinators.iter().enumerate() {
        let executor = HttpExecutor::new(
            coordinator,
            &add_executor(&client, "c", &format!("e{r}"), "t", None).await,
        );
        polls.push(tokio::spawn(
            async move { executor.assign("c", 60, 1).await },
        ));
    }
    for coordinator in &coordinators {
        eventually("parked", || async {
            coordinator
                .metric("colony_parked_waiters", &[("kind", "broadcast")])
                .await
                == 1.0
        })
        .await;
    }
    for _ in 0..2 {
        client
            .query_one(
                "SELECT colony_assign.submit('c', $1)",
                &[&spec("t", json!({}), json!({}))],
            )
            .await
            .unwrap();
    }
    // The submits woke them, assign answered nothing (paused), and they parked again.
    for coordinator in &coordinators {
        eventually("parked again", || async {
            coordinator
                .metric("colony_wake_outcomes_total", &[("outcome", "lost_race")])
                .await
                >= 1.0
                && coordinator
                    .metric("colony_parked_waiters", &[("kind", "broadcast")])
                    .await
                    == 1.0
        })
        .await;
    }
    assert_eq!(
        count(&client, "SELECT waiting FROM colony_assign.stats('c')").await,
        2
    );
    client
        .execute("SELECT colony_assign.resume('c')", &[])
        .await
        .unwrap();
    for poll in polls {
        let got = tokio::time::timeout(e2e::DEADLINE, poll)
            .await
            .expect("woken by resume")
            .unwrap();
        assert_eq!(got.len(), 1);
    }
}
