//! assign(): exactly-once under concurrency and DESIGN.md's matching rules.

use super::{add_executor, assign, setup, submit, submit_many, waiting};
use e2e::{spec, sqlstate};
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn eight_concurrent_assigners_take_each_of_10000_processes_exactly_once() {
    let (db, client) = setup("assign_exactly_once").await;
    for i in 0..8 {
        add_executor(&client, &format!("e{i}"), "t", None).await;
    }
    let specs: Vec<_> = (0..10_000)
        .map(|i| spec("t", json!({}), json!({"priority": i % 7})))
        .collect();
    let submitted: HashSet<i64> = submit_many(&client, &specs).await.into_iter().collect();
    assert_eq!(submitted.len(), 10_000);

    let mut workers = Vec::new();
    for i in 0..8 {
        let db_config = db.config();
        workers.push(tokio::spawn(async move {
            let (client, _) = e2e::connect_with(&db_config).await;
            let executor = format!("e{i}");
            let mut mine = Vec::new();
            loop {
                // Batches of 1..3 so multi-row claims race too.
                let got = assign(&client, &executor, 1 + (i % 3)).await;
                if got.is_empty() {
                    // Empty can mean "the rest is locked by others right now": only stop when
                    // nothing is left waiting at all.
                    if waiting(&client).await == 0 {
                        return mine;
                    }
                    continue;
                }
                for id in got {
                    client
                        .execute(
                            "SELECT colony_assign.close($1, $2, $3)",
                            &[&id, &executor, &json!({"by": executor})],
                        )
                        .await
                        .unwrap();
                    mine.push((id, executor.clone()));
                }
            }
        }));
    }
    let mut seen = HashSet::new();
    for worker in workers {
        for (id, _) in worker.await.unwrap() {
            assert!(seen.insert(id), "process {id} was assigned twice");
        }
    }
    assert_eq!(
        seen, submitted,
        "every process assigned exactly once, none lost"
    );
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 2),
                    count(*) FILTER (WHERE output->>'by' IS DISTINCT FROM assigned_executor)
             FROM colony_assign.processes",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 10_000, "all closed");
    assert_eq!(
        row.get::<_, i64>(1),
        0,
        "each closed by the executor it was assigned to"
    );
}

#[tokio::test]
async fn locations_are_respected() {
    let (_db, client) = setup("assign_locations").await;
    add_executor(&client, "at_a", "t", Some("A")).await;
    add_executor(&client, "at_b", "t", Some("B")).await;
    add_executor(&client, "nowhere", "t", None).await;
    let mut specs = Vec::new();
    for _ in 0..20 {
        specs.push(spec("t", json!({"locationname": "A"}), json!({})));
        specs.push(spec("t", json!({"locationname": "B"}), json!({})));
        specs.push(spec("t", json!({"locationname": ""}), json!({})));
    }
    submit_many(&client, &specs).await;

    let location_of = async |ids: &[i64]| -> Vec<Option<String>> {
        let rows = client
            .query(
                "SELECT location FROM colony_assign.processes WHERE id = ANY($1)",
                &[&ids],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    };

    // An executor without a location gets exactly the 20 location-less processes.
    let got = assign(&client, "nowhere", 100).await;
    assert_eq!(got.len(), 20);
    assert!(location_of(&got).await.iter().all(Option::is_none));
    assert!(
        assign(&client, "nowhere", 100).await.is_empty(),
        "never located work"
    );

    // Each located executor gets its own location's work and never the other's.
    let got = assign(&client, "at_a", 100).await;
    assert_eq!(got.len(), 20);
    assert!(
        location_of(&got)
            .await
            .iter()
            .all(|l| l.as_deref() == Some("A"))
    );
    let got = assign(&client, "at_b", 100).await;
    assert_eq!(got.len(), 20);
    assert!(
        location_of(&got)
            .await
            .iter()
            .all(|l| l.as_deref() == Some("B"))
    );

    // Location-less work goes to executors anywhere, located ones included.
    let anywhere = submit(&client, &spec("t", json!({}), json!({}))).await;
    assert_eq!(assign(&client, "at_b", 1).await, vec![anywhere]);
}

#[tokio::test]
async fn executor_names_target_and_type_still_matters() {
    let (_db, client) = setup("assign_names").await;
    add_executor(&client, "e1", "t", None).await;
    add_executor(&client, "e2", "t", Some("M")).await;
    add_executor(&client, "other_type", "u", None).await;
    let for_e2 = submit(
        &client,
        &spec("t", json!({"executornames": ["e2"]}), json!({})),
    )
    .await;
    // Names narrow, never replace, the type: a "u" executor named in a "t" process never gets it.
    submit(
        &client,
        &spec("t", json!({"executornames": ["other_type"]}), json!({})),
    )
    .await;
    // A named executor elsewhere than the process's location cannot take it either.
    submit(
        &client,
        &spec(
            "t",
            json!({"executornames": ["e2"], "locationname": "L"}),
            json!({}),
        ),
    )
    .await;

    assert!(assign(&client, "e1", 10).await.is_empty());
    assert!(assign(&client, "other_type", 10).await.is_empty());
    assert_eq!(assign(&client, "e2", 10).await, vec![for_e2]);

    // Targeted and untargeted work merge in queue order.
    let plain = submit(&client, &spec("t", json!({}), json!({"priority": 1}))).await;
    let targeted = submit(
        &client,
        &spec(
            "t",
            json!({"executornames": ["e1", "e2"]}),
            json!({"priority": 2}),
        ),
    )
    .await;
    assert_eq!(assign(&client, "e1", 10).await, vec![targeted, plain]);
}

#[tokio::test]
async fn higher_priority_first_then_oldest_first() {
    let (_db, client) = setup("assign_priority").await;
    add_executor(&client, "e", "t", Some("L")).await;
    let mut ids = Vec::new();
    for (priority, location) in [
        (1, None),
        (5, Some("L")),
        (3, None),
        (5, None),
        (-2, Some("L")),
    ] {
        let conditions = match location {
            Some(l) => json!({"locationname": l}),
            None => json!({}),
        };
        ids.push(
            submit(
                &client,
                &spec("t", conditions, json!({"priority": priority})),
            )
            .await,
        );
    }
    // Across both arms (located and location-less): 5 (older), 5, 3, then the batch 1, -2.
    assert_eq!(assign(&client, "e", 1).await, vec![ids[1]]);
    assert_eq!(assign(&client, "e", 1).await, vec![ids[3]]);
    assert_eq!(assign(&client, "e", 1).await, vec![ids[2]]);
    assert_eq!(assign(&client, "e", 5).await, vec![ids[0], ids[4]]);
}

#[tokio::test]
async fn strict_mode_starts_processes_in_exact_priority_order_under_four_assigners() {
    let (db, client) = setup("assign_strict").await;
    client
        .execute("SELECT colony_assign.set_strict('c', true)", &[])
        .await
        .unwrap();
    for i in 0..4 {
        add_executor(&client, &format!("e{i}"), "t", None).await;
    }
    // 400 processes with scrambled priorities (a fixed permutation, so failures reproduce).
    let specs: Vec<_> = (0..400)
        .map(|i| spec("t", json!({}), json!({"priority": (i * 37) % 101 - 50})))
        .collect();
    submit_many(&client, &specs).await;

    let mut workers = Vec::new();
    for i in 0..4 {
        let config = db.config();
        workers.push(tokio::spawn(async move {
            let (client, _) = e2e::connect_with(&config).await;
            let executor = format!("e{i}");
            let mut taken = 0;
            while !assign(&client, &executor, 1).await.is_empty() {
                taken += 1;
            }
            taken
        }));
    }
    let mut total = 0;
    for worker in workers {
        total += worker.await.unwrap();
    }
    assert_eq!(total, 400);
    // In claim order, priorities never go up, and equal priorities go oldest first.
    let order: Vec<(i32, i64)> = client
        .query(
            "SELECT priority, id FROM colony_assign.processes ORDER BY started_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for pair in order.windows(2) {
        let ((p0, id0), (p1, id1)) = (pair[0], pair[1]);
        assert!(
            p0 > p1 || (p0 == p1 && id0 < id1),
            "claimed out of order: (priority {p0}, id {id0}) before (priority {p1}, id {id1})"
        );
    }
}

#[tokio::test]
async fn process_shows_the_whole_lifecycle() {
    let (_db, client) = setup("process_lifecycle").await;
    add_executor(&client, "e", "t", Some("L")).await;
    let submitted = spec(
        "t",
        json!({"locationname": "L"}),
        json!({"args": [1, "two"], "label": "x", "priority": 7}),
    );
    let id = submit(&client, &submitted).await;
    let row = client
        .query_one("SELECT state, spec, location, priority, label, assigned_executor FROM colony_assign.process($1)", &[&id])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("state"), 0);
    assert_eq!(
        row.get::<_, serde_json::Value>("spec"),
        submitted,
        "spec exactly as submitted"
    );
    assert_eq!(
        row.get::<_, Option<String>>("location").as_deref(),
        Some("L")
    );
    assert_eq!(row.get::<_, i32>("priority"), 7);
    assert_eq!(row.get::<_, Option<String>>("label").as_deref(), Some("x"));
    assert_eq!(row.get::<_, Option<String>>("assigned_executor"), None);
    assert_eq!(assign(&client, "e", 1).await, vec![id]);
    client
        .execute(
            "SELECT colony_assign.close($1, 'e', '{\"answer\": 42}')",
            &[&id],
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT state, output, assigned_executor, started_at <= ended_at FROM colony_assign.process($1)",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    assert_eq!(row.get::<_, serde_json::Value>(1), json!({"answer": 42}));
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("e"));
    assert!(row.get::<_, bool>(3));
}

#[tokio::test]
async fn one_statement_can_assign_and_close_what_it_assigned() {
    // Each call sees what the calls before it in the same statement wrote, as volatile SQL
    // functions do: the claim, the close, and a second close that finds the process ended.
    let (_db, client) = setup("assign_close_one_statement").await;
    add_executor(&client, "e", "t", None).await;
    for _ in 0..3 {
        submit(&client, &spec("t", json!({}), json!({}))).await;
    }
    let closed = client
        .query(
            "SELECT colony_assign.close(p.id, 'e', '{\"ok\": true}')
             FROM colony_assign.assign('c', 'e', 10) p",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(closed.len(), 3);
    let states: Vec<i32> = client
        .query("SELECT state FROM colony_assign.processes ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(states, vec![2, 2, 2]);
    let again = client
        .execute(
            "SELECT colony_assign.close(id, 'e') FROM colony_assign.processes ORDER BY id LIMIT 1",
            &[],
        )
        .await;
    assert_eq!(sqlstate(again), "55000");
}

#[tokio::test]
async fn paused_colony_assigns_nothing_until_resumed() {
    let (_db, client) = setup("assign_paused").await;
    add_executor(&client, "e", "t", None).await;
    let id = submit(&client, &spec("t", json!({}), json!({}))).await;
    client
        .execute("SELECT colony_assign.pause('c')", &[])
        .await
        .unwrap();
    assert!(
        assign(&client, "e", 1).await.is_empty(),
        "empty, not an error, while paused"
    );
    client
        .execute("SELECT colony_assign.resume('c')", &[])
        .await
        .unwrap();
    assert_eq!(assign(&client, "e", 1).await, vec![id]);
}

#[tokio::test]
async fn close_many_closes_what_it_may_and_says_why_not_for_the_rest() {
    let (_db, client) = setup("close_many").await;
    add_executor(&client, "e", "t", None).await;
    add_executor(&client, "other", "t", None).await;
    let specs: Vec<_> = (0..4).map(|_| spec("t", json!({}), json!({}))).collect();
    let ids = submit_many(&client, &specs).await;
    assert_eq!(assign(&client, "e", 3).await, ids[..3].to_vec());
    assert_eq!(assign(&client, "other", 1).await, vec![ids[3]]);
    client
        .execute("SELECT colony_assign.close($1, 'e')", &[&ids[2]])
        .await
        .unwrap();
    let batch = json!([
        {"id": ids[0], "output": {"n": 0}},
        {"id": ids[1]},
        {"id": ids[2]},
        {"id": ids[3]},
        {"id": 987654321},
    ]);
    let rows: Vec<(i64, bool, Option<String>)> = client
        .query("SELECT * FROM colony_assign.close_many('e', $1)", &[&batch])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (ids[0], true, None),
            (ids[1], true, None),
            (ids[2], false, Some("not running (it is SUCCESS)".into())),
            (ids[3], false, Some("assigned to another executor".into())),
            (987654321, false, Some("unknown process".into())),
        ]
    );
    let output: serde_json::Value = client
        .query_one(
            "SELECT output FROM colony_assign.processes WHERE id = $1",
            &[&ids[0]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(output, json!({"n": 0}));
    let before = e2e::fingerprint(&client).await;
    for bad in [
        json!({"id": 1}),
        json!([{"id": "x"}]),
        json!([{"id": 1, "extra": 2}]),
        json!([7]),
    ] {
        let result = client
            .query("SELECT * FROM colony_assign.close_many('e', $1)", &[&bad])
            .await;
        assert_eq!(e2e::sqlstate(result), "22023", "{bad}");
    }
    assert_eq!(e2e::fingerprint(&client).await, before);
}

/// assign() scans from where this session last claimed (src/cursor.rs); these are the cases in
/// which that must not hide work.
#[tokio::test]
async fn scan_cursors_never_hide_work_that_was_rolled_back_requeued_or_is_the_only_work() {
    let (db, client) = setup("assign_cursor").await;
    add_executor(&client, "e", "t", Some("L")).await;
    let located = |priority: i32| {
        spec(
            "t",
            json!({"locationname": "L"}),
            json!({"priority": priority, "maxexectime": 60, "maxretries": 1}),
        )
    };
    let ids = submit_many(&client, &[located(0), located(0), located(0), located(0)]).await;

    // A claim that rolls back is waiting again, behind the cursor it moved: the next scan of
    // this session sees it first all the same.
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(assign(&client, "e", 2).await, ids[0..2]);
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(assign(&client, "e", 1).await, vec![ids[0]]);

    // Another session has no cursor: work submitted ahead of this session's cursor is first
    // in queue order there, at once.
    let urgent = submit(&client, &located(9)).await;
    let other = db.client().await;
    assert_eq!(assign(&other, "e", 1).await, vec![urgent]);

    // A claim rolled back to a savepoint is waiting again at once: for this session (its own
    // cursor is dropped) and for another that claimed past it meanwhile (the rollback moved
    // the range's epoch).
    let second = db.client().await;
    client.batch_execute("BEGIN; SAVEPOINT s").await.unwrap();
    assert_eq!(assign(&client, "e", 1).await, vec![ids[1]]);
    assert_eq!(assign(&second, "e", 1).await, vec![ids[2]]);
    client
        .batch_execute("ROLLBACK TO SAVEPOINT s")
        .await
        .unwrap();
    assert_eq!(assign(&second, "e", 1).await, vec![ids[1]]);
    client.batch_execute("ROLLBACK").await.unwrap();
    second
        .execute(
            "SELECT colony_assign.release('c', 'e', $1)",
            &[&vec![ids[1], ids[2]]],
        )
        .await
        .unwrap();

    // A process requeued behind the cursor is seen by the next call (the requeue moved the
    // range's epoch).
    assert_eq!(assign(&client, "e", 3).await, ids[1..4]);
    // (An execution deadline passes: reap() requeues it.)
    client
        .execute(
            "UPDATE colony_assign.processes SET exec_deadline = now() - interval '1 s' WHERE id = $1",
            &[&ids[2]],
        )
        .await
        .unwrap();
    let requeued: i64 = client
        .query_one("SELECT requeued FROM colony_assign.reap()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(requeued, 1);
    assert_eq!(assign(&client, "e", 1).await, vec![ids[2]]);

    // Work ahead of the cursor in queue order (a higher priority) is seen by the very next
    // call, in queue order: its submit moved the range's epoch, which drops every cursor.
    let late = submit_many(&client, &[located(5), located(0)]).await;
    assert_eq!(assign(&client, "e", 5).await, vec![late[0], late[1]]);
    assert_eq!(waiting(&client).await, 0);
}

/// Puts running process `id` back to WAITING with a plain UPDATE. Unlike every entry point that
/// makes work assignable, this does not bump its queue range's epoch, so a session's scan cursor
/// past it stays: only a scan from the head finds it (with a cursor, the session gets the next
/// process after its position instead).
async fn requeue_behind_the_cursors(client: &tokio_postgres::Client, id: i64) {
    let updated = client
        .execute(
            "UPDATE colony_assign.processes
             SET state = 0, assigned_executor = NULL, started_at = NULL, exec_deadline = NULL
             WHERE id = $1 AND state = 1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1, "process {id} was running");
}

/// Strict mode never scans from a cursor: in one session, a process waiting behind the
/// session's last claim (where a cursor would start) is the very next one started, and so is a
/// process submitted at a higher priority.
#[tokio::test]
async fn strict_mode_ignores_scan_cursors() {
    let (_db, client) = setup("assign_strict_cursor").await;
    client
        .execute("SELECT colony_assign.set_strict('c', true)", &[])
        .await
        .unwrap();
    // The longest TTL, so that a cursor, if strict mode kept one, would still be in force
    // however slowly this runs.
    client
        .batch_execute("SET colony_assign.scan_cursor_ttl = 60000")
        .await
        .unwrap();
    add_executor(&client, "e", "t", Some("L")).await;
    let located = |priority: i32| {
        spec(
            "t",
            json!({"locationname": "L"}),
            json!({"priority": priority}),
        )
    };
    let ids = submit_many(&client, &[located(0), located(0), located(0)]).await;
    assert_eq!(assign(&client, "e", 1).await, vec![ids[0]]);
    assert_eq!(assign(&client, "e", 1).await, vec![ids[1]]);
    requeue_behind_the_cursors(&client, ids[0]).await;
    assert_eq!(
        assign(&client, "e", 1).await,
        vec![ids[0]],
        "scanned from the head (from a cursor it would be {})",
        ids[2]
    );
    let urgent = submit(&client, &located(9)).await;
    assert_eq!(assign(&client, "e", 1).await, vec![urgent]);
    assert_eq!(assign(&client, "e", 1).await, vec![ids[2]]);
}

/// `colony_assign.scan_cursor_ttl = 0` turns the cursors off for a session: every scan starts
/// at the head, so a process waiting behind the session's last claim is the next one it gets,
/// each time.
#[tokio::test]
async fn a_zero_scan_cursor_ttl_scans_from_the_head_every_time() {
    let (_db, client) = setup("assign_cursor_ttl").await;
    add_executor(&client, "e", "t", None).await;
    client
        .batch_execute("SET colony_assign.scan_cursor_ttl = 0")
        .await
        .unwrap();
    let anywhere = |priority: i32| spec("t", json!({}), json!({"priority": priority}));
    let ids = submit_many(
        &client,
        &[anywhere(0), anywhere(0), anywhere(0), anywhere(0)],
    )
    .await;
    assert_eq!(assign(&client, "e", 1).await, vec![ids[0]]);
    assert_eq!(assign(&client, "e", 1).await, vec![ids[1]]);
    requeue_behind_the_cursors(&client, ids[0]).await;
    assert_eq!(
        assign(&client, "e", 1).await,
        vec![ids[0]],
        "scanned from the head (from a cursor it would be {})",
        ids[2]
    );
    assert_eq!(assign(&client, "e", 1).await, vec![ids[2]]);
    requeue_behind_the_cursors(&client, ids[1]).await;
    assert_eq!(
        assign(&client, "e", 1).await,
        vec![ids[1]],
        "again from the head (from a cursor it would be {})",
        ids[3]
    );
    // Out of range is refused, and the setting stays.
    let refused = client
        .batch_execute("SET colony_assign.scan_cursor_ttl = -1")
        .await;
    assert_eq!(e2e::sqlstate(refused), "22023");
    let ttl: String = client
        .query_one("SHOW colony_assign.scan_cursor_ttl", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ttl, "0");
}
