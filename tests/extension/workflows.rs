//! Workflows: DAG order, inputs, failure and cancel propagation, validation.

use super::{add_executor, assign, setup};
use e2e::{connect_with, fingerprint, spec, sqlstate};
use serde_json::{Value, json};
use std::collections::HashSet;
use tokio_postgres::Client;

fn node(name: &str, deps: &[&str]) -> Value {
    let mut s = spec(
        "t",
        json!({"dependencies": deps}),
        json!({"nodename": name}),
    );
    s["funcname"] = json!(format!("run_{name}"));
    s
}

async fn submit_workflow(client: &Client, nodes: &[Value]) -> i64 {
    client
        .query_one(
            "SELECT colony_assign.submit_workflow('c', $1)",
            &[&Value::Array(nodes.to_vec())],
        )
        .await
        .unwrap()
        .get(0)
}

async fn states(client: &Client, workflow: i64) -> Vec<(String, i32)> {
    client
        .query(
            "SELECT nodename, state FROM colony_assign.processes WHERE workflow_id = $1 ORDER BY nodename",
            &[&workflow],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// An SQL-direct executor: LISTENs on its channels, assigns, closes with {"node": nodename},
/// and on an empty answer waits for a notification (or a short timeout) and tries again.
async fn sql_executor(db_config: tokio_postgres::Config, name: String, workflow: i64) -> Vec<i64> {
    let (client, mut notifications) = connect_with(&db_config).await;
    let channels: Vec<String> = client
        .query("SELECT colony_assign.channels('c', $1)", &[&name])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for channel in &channels {
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .await
            .unwrap();
    }
    let mut taken = Vec::new();
    // A bound on the whole run, so that one executor failing (its task panics) fails the test
    // instead of leaving the others waiting for work that never comes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: the workflow did not finish within 120 s"
        );
        let rows = client
            .query(
                "SELECT id, nodename FROM colony_assign.assign('c', $1)",
                &[&name],
            )
            .await
            .unwrap();
        if rows.is_empty() {
            let left: i64 = client
                .query_one(
                    "SELECT count(*) FROM colony_assign.processes WHERE workflow_id = $1 AND state < 2",
                    &[&workflow],
                )
                .await
                .unwrap()
                .get(0);
            if left == 0 {
                return taken;
            }
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(200), notifications.recv())
                    .await;
            continue;
        }
        for row in rows {
            let (id, nodename): (i64, String) = (row.get(0), row.get(1));
            client
                .execute(
                    "SELECT colony_assign.close($1, $2, $3)",
                    &[&id, &name, &json!({"node": nodename})],
                )
                .await
                .unwrap();
            taken.push(id);
        }
    }
}

#[tokio::test]
async fn a_random_1000_node_dag_runs_in_dependency_order_with_its_parents_outputs() {
    let (db, client) = setup("workflow_dag").await;
    for i in 0..8 {
        add_executor(&client, &format!("e{i}"), "t", None).await;
    }
    // Each node depends on up to 3 of the 40 nodes before it (a fixed pseudo-random choice).
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let names: Vec<String> = (0..1000).map(|i| format!("n{i}")).collect();
    let mut nodes = Vec::new();
    for i in 0..1000 {
        let mut deps = Vec::new();
        if i > 0 {
            for _ in 0..next() % 4 {
                let parent = i - 1 - next() % i.min(40);
                if !deps.contains(&names[parent].as_str()) {
                    deps.push(names[parent].as_str());
                }
            }
        }
        nodes.push(node(&names[i], &deps));
    }
    let workflow = submit_workflow(&client, &nodes).await;

    let mut workers = Vec::new();
    for i in 0..8 {
        workers.push(tokio::spawn(sql_executor(
            db.config(),
            format!("e{i}"),
            workflow,
        )));
    }
    let mut seen = HashSet::new();
    for worker in workers {
        for id in worker.await.unwrap() {
            assert!(seen.insert(id), "process {id} ran twice");
        }
    }
    assert_eq!(seen.len(), 1000);
    let check = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(sql, &[&workflow])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        check("SELECT count(*) FROM colony_assign.processes WHERE workflow_id = $1 AND state = 2")
            .await,
        1000
    );
    assert_eq!(
        check(
            "SELECT count(*) FROM colony_assign.processes c
             JOIN colony_assign.processes p ON p.id = ANY (c.parents)
             WHERE c.workflow_id = $1 AND c.started_at < p.ended_at"
        )
        .await,
        0,
        "no node started before each of its parents ended"
    );
    // The input is computed here from the submitted spec, not from the extension's own edges.
    assert_eq!(
        check(
            "SELECT count(*) FROM colony_assign.processes c
             WHERE c.workflow_id = $1 AND jsonb_array_length(c.spec #> '{conditions,dependencies}') > 0
               AND c.input IS DISTINCT FROM (
                   SELECT jsonb_agg(jsonb_build_object('node', d.dep) ORDER BY d.ord)
                   FROM jsonb_array_elements_text(c.spec #> '{conditions,dependencies}') WITH ORDINALITY AS d(dep, ord))"
        )
        .await,
        0,
        "each child's input is its parents' outputs in dependency order"
    );
    let graph: Value = client
        .query_one("SELECT colony_assign.workflow($1)", &[&workflow])
        .await
        .unwrap()
        .get(0);
    assert_eq!(graph["state"], 2);
    assert_eq!(graph["nodes"].as_array().unwrap().len(), 1000);
}

#[tokio::test]
async fn a_failing_node_fails_exactly_its_descendants() {
    let (_db, client) = setup("workflow_diamond").await;
    add_executor(&client, "e", "t", None).await;
    let workflow = submit_workflow(
        &client,
        &[
            node("a", &[]),
            node("b", &["a"]),
            node("c", &["a"]),
            node("d", &["b", "c"]),
            node("e", &["d"]),
            node("f", &[]),
            node("g", &["c"]),
        ],
    )
    .await;
    // Run everything that becomes assignable; b fails.
    loop {
        let rows = client
            .query(
                "SELECT id, nodename FROM colony_assign.assign('c', 'e', 10)",
                &[],
            )
            .await
            .unwrap();
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let (id, name): (i64, String) = (row.get(0), row.get(1));
            if name == "b" {
                client
                    .execute("SELECT colony_assign.fail($1, 'e', '{boom}')", &[&id])
                    .await
                    .unwrap();
            } else {
                client
                    .execute("SELECT colony_assign.close($1, 'e', '{}')", &[&id])
                    .await
                    .unwrap();
            }
        }
    }
    let expected: Vec<(String, i32)> = [
        ("a", 2),
        ("b", 3),
        ("c", 2),
        ("d", 3),
        ("e", 3),
        ("f", 2),
        ("g", 2),
    ]
    .iter()
    .map(|(n, s)| (n.to_string(), *s))
    .collect();
    assert_eq!(states(&client, workflow).await, expected);
    let errors: Vec<Vec<String>> = client
        .query(
            "SELECT errors FROM colony_assign.processes WHERE workflow_id = $1 AND nodename IN ('d', 'e') ORDER BY nodename",
            &[&workflow],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for e in &errors {
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("parent \"b\" (process ") && e[0].ends_with(" failed"),
            "{e:?}"
        );
    }
    let graph: Value = client
        .query_one("SELECT colony_assign.workflow($1)", &[&workflow])
        .await
        .unwrap()
        .get(0);
    assert_eq!(graph["state"], 3, "a workflow with a failed node is FAILED");
}

#[tokio::test]
async fn cancelling_a_node_cancels_its_descendants() {
    let (_db, client) = setup("workflow_cancel").await;
    let workflow = submit_workflow(
        &client,
        &[
            node("a", &[]),
            node("b", &["a"]),
            node("c", &["b"]),
            node("x", &[]),
        ],
    )
    .await;
    let a: i64 = client
        .query_one(
            "SELECT id FROM colony_assign.processes WHERE workflow_id = $1 AND nodename = 'a'",
            &[&workflow],
        )
        .await
        .unwrap()
        .get(0);
    client
        .execute("SELECT colony_assign.cancel($1)", &[&a])
        .await
        .unwrap();
    let expected: Vec<(String, i32)> = [("a", 4), ("b", 4), ("c", 4), ("x", 0)]
        .iter()
        .map(|(n, s)| (n.to_string(), *s))
        .collect();
    assert_eq!(states(&client, workflow).await, expected);
}

/// Both parents of one child close in overlapping transactions: the child is released once,
/// by whichever commits second, with both outputs, and notified once.
#[tokio::test]
async fn two_parents_closing_at_once_release_their_child_exactly_once() {
    let (db, client) = setup("workflow_race").await;
    add_executor(&client, "e1", "t", None).await;
    add_executor(&client, "e2", "t", None).await;
    let workflow = submit_workflow(
        &client,
        &[
            node("p1", &[]),
            node("p2", &[]),
            node("child", &["p1", "p2"]),
        ],
    )
    .await;
    let p1 = assign(&client, "e1", 1).await[0];
    let p2 = assign(&client, "e2", 1).await[0];
    let broadcast = colony_proto::Key::Broadcast {
        colony: "c",
        executor_type: "t",
    }
    .channel();
    let mut listener = db.listener(std::slice::from_ref(&broadcast)).await;
    listener.drain(&client).await;

    let mut first = db.client().await;
    let tx1 = first.transaction().await.unwrap();
    tx1.execute(
        "SELECT colony_assign.close($1, 'e1', '{\"from\": \"p1\"}')",
        &[&p1],
    )
    .await
    .unwrap();
    let config = db.config();
    let second = tokio::spawn(async move {
        let (mut client, _) = connect_with(&config).await;
        let tx2 = client.transaction().await.unwrap();
        tx2.execute(
            "SELECT colony_assign.close($1, 'e2', '{\"from\": \"p2\"}')",
            &[&p2],
        )
        .await
        .unwrap();
        tx2.commit().await.unwrap();
    });
    // The second close is now blocked on the child's row, which the first has decremented.
    e2e::eventually("second close waits for the child's row lock", || async {
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
    .await;
    tx1.commit().await.unwrap();
    second.await.unwrap();

    let row = client
        .query_one(
            "SELECT state, pending_parents, input FROM colony_assign.processes WHERE workflow_id = $1 AND nodename = 'child'",
            &[&workflow],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 0);
    assert_eq!(
        row.get::<_, i32>(1),
        0,
        "released exactly once (a second release would underflow or be refused)"
    );
    assert_eq!(
        row.get::<_, Value>(2),
        json!([{"from": "p1"}, {"from": "p2"}]),
        "both outputs, in dependency order"
    );
    assert_eq!(
        listener.drain(&client).await,
        vec![(broadcast, "1".to_owned())],
        "notified once"
    );
}

#[tokio::test]
async fn malformed_workflows_are_rejected_and_write_nothing() {
    let (_db, client) = setup("workflow_invalid").await;
    submit_workflow(&client, &[node("ok", &[])]).await; // some rows, so "unchanged" means something
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "at least one spec"),
        (json!({"not": "an array"}), "JSON array"),
        (
            json!([spec("t", json!({}), json!({}))]),
            "nodename is required",
        ),
        (json!([node("a", &[]), node("a", &[])]), "used twice"),
        (json!([node("a", &["ghost"])]), "not a nodename"),
        (
            json!([node("a", &[]), node("b", &["a", "a"])]),
            "listed twice",
        ),
        (json!([node("a", &["a"])]), "cycle"),
        (
            json!([
                node("r", &[]),
                node("a", &["r", "c"]),
                node("b", &["a"]),
                node("c", &["b"])
            ]),
            "cycle",
        ),
        (
            json!([node("a", &[]), {"funcname": "f", "nodename": "b", "conditions": {"executortype": "t"}, "bogus": 1}]),
            "unknown key",
        ),
    ];
    for (specs, expected) in cases {
        let before = fingerprint(&client).await;
        let result = client
            .query_one("SELECT colony_assign.submit_workflow('c', $1)", &[&specs])
            .await;
        let message = result
            .as_ref()
            .err()
            .and_then(|e| e.as_db_error())
            .map(|e| e.message().to_owned());
        assert_eq!(sqlstate(result), "22023", "{specs}");
        let message = message.unwrap();
        assert!(message.contains(expected), "{specs}: {message}");
        assert_eq!(
            fingerprint(&client).await,
            before,
            "{specs} wrote something"
        );
    }
    let cycle = client
        .query_one(
            "SELECT colony_assign.submit_workflow('c', $1)",
            &[&json!([
                node("x", &["z"]),
                node("y", &["x"]),
                node("z", &["y"])
            ])],
        )
        .await
        .unwrap_err();
    assert!(
        cycle
            .as_db_error()
            .unwrap()
            .message()
            .contains("\"x\" -> \"y\" -> \"z\" -> \"x\"")
            || cycle
                .as_db_error()
                .unwrap()
                .message()
                .contains("\"y\" -> \"z\" -> \"x\" -> \"y\"")
            || cycle
                .as_db_error()
                .unwrap()
                .message()
                .contains("\"z\" -> \"x\" -> \"y\" -> \"z\""),
        "the cycle is named: {cycle}"
    );
}
