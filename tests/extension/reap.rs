//! reap(): deadlines enforced exactly once, whatever number of sessions run it together.

use super::{add_executor, assign, setup, submit, submit_many};
use e2e::{fingerprint, spec, sqlstate};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::Barrier;

#[tokio::test]
async fn four_concurrent_reapers_handle_each_overdue_process_exactly_once() {
    let (db, client) = setup("reap_concurrent").await;
    add_executor(&client, "e", "t", None).await;
    // 1,500 running past maxexectime: 500 may retry (maxretries 2), 500 have no retries left
    // (maxretries 0), 500 retry forever (-1). 500 more are waiting past maxwaittime.
    let mut specs = Vec::new();
    for retries in [2, 0, -1] {
        specs.extend((0..500).map(|_| {
            spec(
                "t",
                json!({}),
                json!({"maxexectime": 600, "maxretries": retries}),
            )
        }));
    }
    submit_many(&client, &specs).await;
    let assigned = client
        .query("SELECT id FROM colony_assign.assign('c', 'e', 1000)", &[])
        .await
        .unwrap()
        .len()
        + client
            .query("SELECT id FROM colony_assign.assign('c', 'e', 1000)", &[])
            .await
            .unwrap()
            .len();
    assert_eq!(assigned, 1500);
    let waiting: Vec<_> = (0..500)
        .map(|_| spec("t", json!({}), json!({"maxwaittime": 600})))
        .collect();
    submit_many(&client, &waiting).await;
    // Move every deadline into the past rather than sleeping past it.
    client
        .batch_execute(
            "UPDATE colony_assign.processes SET exec_deadline = now() - interval '1 s' WHERE state = 1;
             UPDATE colony_assign.processes SET wait_deadline = now() - interval '1 s' WHERE state = 0;",
        )
        .await
        .unwrap();

    let start = Arc::new(Barrier::new(4));
    let mut reapers = Vec::new();
    for _ in 0..4 {
        let (config, start) = (db.config(), start.clone());
        reapers.push(tokio::spawn(async move {
            let (client, _) = e2e::connect_with(&config).await;
            start.wait().await;
            let row = client
                .query_one("SELECT * FROM colony_assign.reap()", &[])
                .await
                .unwrap();
            (row.get::<_, i64>("requeued"), row.get::<_, i64>("failed"))
        }));
    }
    let (mut requeued, mut failed) = (0, 0);
    for reaper in reapers {
        let (r, f) = reaper.await.unwrap();
        requeued += r;
        failed += f;
    }
    assert_eq!(requeued, 1000, "maxretries 2 and -1 requeue");
    assert_eq!(failed, 1000, "maxretries 0 and the waiting ones fail");

    // The table agrees, and nothing was handled twice (retries would be 2).
    let rows = client
        .query(
            "SELECT state, retries, count(*) FROM colony_assign.processes GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let summary: Vec<(i32, i32, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(summary, vec![(0, 1, 1000), (3, 0, 1000)]);
    let errors: i64 = client
        .query_one(
            "SELECT count(*) FROM colony_assign.processes WHERE state = 3 AND cardinality(errors) = 1
               AND (errors[1] LIKE 'maximum execution time%' OR errors[1] LIKE 'maximum waiting time%')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(errors, 1000, "each failure says why, once");

    // A second round finds nothing new: compare-and-set leaves nothing to redo.
    let row = client
        .query_one("SELECT * FROM colony_assign.reap()", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (0, 0));
}

/// A running process of executor "e" in colony "c" whose execution deadline has passed, with
/// no retries left: reap() fails it.
async fn overdue(client: &tokio_postgres::Client) -> i64 {
    let id = submit(
        client,
        &spec("t", json!({}), json!({"maxexectime": 600, "maxretries": 0})),
    )
    .await;
    assert_eq!(assign(client, "e", 1).await, vec![id]);
    client
        .execute(
            "UPDATE colony_assign.processes SET exec_deadline = now() - interval '1 s' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    id
}

async fn state_and_output(client: &tokio_postgres::Client, id: i64) -> (i32, Option<Value>) {
    let row = client
        .query_one(
            "SELECT state, output FROM colony_assign.processes WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// A close and reap() on one overdue process: exactly one of them ends it. The close wins
/// (SUCCESS with its output; the reaper counts nothing) or the reaper does (FAILED; the close is
/// refused with 55000 and changes nothing), never both and never neither: in either order, and
/// sent at the same moment from two sessions.
#[tokio::test]
async fn a_close_racing_the_reaper_wins_or_loses_cleanly() {
    let (db, client) = setup("reap_race").await;
    add_executor(&client, "e", "t", None).await;
    let reap = async |session: &tokio_postgres::Client| -> i64 {
        session
            .query_one("SELECT failed FROM colony_assign.reap()", &[])
            .await
            .unwrap()
            .get(0)
    };

    // The reaper first: the late close is refused and changes nothing.
    let id = overdue(&client).await;
    assert_eq!(reap(&client).await, 1);
    let before = fingerprint(&client).await;
    let late = client
        .execute("SELECT colony_assign.close($1, 'e', '{}')", &[&id])
        .await;
    assert_eq!(sqlstate(late), "55000");
    assert_eq!(fingerprint(&client).await, before);
    assert_eq!(state_and_output(&client, id).await, (3, None));

    // The close first: the reaper finds nothing to do.
    let id = overdue(&client).await;
    client
        .execute(
            "SELECT colony_assign.close($1, 'e', '{\"by\": \"e\"}')",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(reap(&client).await, 0);
    assert_eq!(
        state_and_output(&client, id).await,
        (2, Some(json!({"by": "e"})))
    );

    // Both at once, from two sessions, round after round: whichever wins, the other loses.
    let (closer, reaper) = (db.client().await, db.client().await);
    for round in 0..20 {
        let id = overdue(&client).await;
        let output = json!({"round": round});
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&id, &output];
        let (closed, failed) = tokio::join!(
            closer.execute("SELECT colony_assign.close($1, 'e', $2)", &params),
            reap(&reaper),
        );
        match closed {
            Ok(_) => {
                assert_eq!(failed, 0, "round {round}: closed, yet the reaper failed it");
                assert_eq!(
                    state_and_output(&client, id).await,
                    (2, Some(output)),
                    "round {round}"
                );
            }
            Err(e) => {
                assert_eq!(
                    e.code().map(|c| c.code()),
                    Some("55000"),
                    "round {round}: {e}"
                );
                assert_eq!(failed, 1, "round {round}: refused, yet not reaped");
                assert_eq!(
                    state_and_output(&client, id).await,
                    (3, None),
                    "round {round}"
                );
            }
        }
    }
}
