//! Partitions, measured: a blackholed link (traffic dropped, not refused — `faultproxy`) between a
//! replica and PostgreSQL, and between executors and a replica. The outcomes the issue bounds:
//! the cut is detected within 2 s, service is back within 10 s of the heal, no process is lost
//! and none is assigned twice. (The figures themselves are in docs/BENCHMARKS.md, scenario
//! "partition"; these bounds are generous on purpose.)

use super::{add_executor, count};
use colony_client::{Client, Url};
use e2e::{Coordinator, TestDb, eventually, spec, within};
use faultproxy::Proxy;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::Client as Sql;

const DETECTION: Duration = Duration::from_secs(2);
const RECOVERY: Duration = Duration::from_secs(10);

/// (process id, executor, when the executor received it) for every process an executor got.
type Claims = Arc<Mutex<Vec<(i64, String, Instant)>>>;

/// An HTTP executor (colony-client over `replicas`, starting at `start_at`) that closes whatever
/// it gets, recording each claim, until the test ends.
fn run_executor(
    name: &str,
    token: String,
    replicas: Vec<Url>,
    start_at: usize,
    claims: Claims,
) -> (Client, tokio::task::JoinHandle<()>) {
    let client = Client::builder(replicas, token)
        .start_at(start_at)
        .build()
        .unwrap();
    let (c, name) = (client.clone(), name.to_owned());
    let task = tokio::spawn(async move {
        loop {
            let Ok(processes) = c.assign("c", Duration::from_secs(20), 1).await else {
                continue;
            };
            for p in processes {
                claims
                    .lock()
                    .unwrap()
                    .push((p.id, name.clone(), Instant::now()));
                // A close lost to the partition is retried by the client elsewhere; one that
                // finally fails leaves the process to its deadline, which the test would see.
                let _ = c.close(p.id, Some(json!("done"))).await;
            }
        }
    });
    (client, task)
}

/// `n` location-less processes of type t, submitted over SQL; their ids.
async fn submit(sql: &Sql, n: usize) -> Vec<i64> {
    submit_with(sql, n, json!({})).await
}

/// [`submit`] with `extra` top-level spec fields.
async fn submit_with(sql: &Sql, n: usize, extra: serde_json::Value) -> Vec<i64> {
    let specs = json!(vec![spec("t", json!({}), extra); n]);
    sql.query(
        "SELECT id FROM colony_assign.submit_many('c', $1) AS id",
        &[&specs],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Waits until every process in `ids` has SUCCEEDED.
async fn all_succeeded(sql: &Sql, ids: &[i64]) {
    eventually("every process closed", || async {
        let done: i64 = sql
            .query_one(
                "SELECT count(*) FROM colony_assign.processes WHERE id = ANY($1) AND state = 2",
                &[&ids],
            )
            .await
            .unwrap()
            .get(0);
        done == ids.len() as i64
    })
    .await;
}

/// No process in the records twice, none lost: each received exactly once and SUCCESS, and
/// (unless `retries_allowed`) none retried.
async fn each_exactly_once(sql: &Sql, claims: &Claims, ids: &[i64], retries_allowed: bool) {
    let mut times: HashMap<i64, usize> = HashMap::new();
    for (id, _, _) in claims.lock().unwrap().iter() {
        *times.entry(*id).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "assigned more than once: {twice:?}");
    for id in ids {
        assert_eq!(times.get(id), Some(&1), "process {id} was never received");
    }
    let unfinished = count(
        sql,
        "SELECT count(*) FROM colony_assign.processes WHERE state <> 2",
    )
    .await;
    assert_eq!(unfinished, 0, "every process SUCCEEDED");
    if !retries_allowed {
        let retried = count(
            sql,
            "SELECT count(*) FROM colony_assign.processes WHERE retries > 0",
        )
        .await;
        assert_eq!(retried, 0, "no process retried");
    }
}

/// Polls `condition` every 10 ms until it holds; how long that took from `since`.
async fn time_until<F, Fut>(what: &str, since: Instant, condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(what, condition).await;
    since.elapsed()
}

/// Waits until each replica has the given number of long-polls parked.
async fn parked(expected: &[(&Coordinator, usize)]) {
    eventually("executors parked", || async {
        for (replica, n) in expected {
            let parked = replica
                .metric("colony_parked_waiters", &[("kind", "broadcast")])
                .await;
            if parked != *n as f64 {
                return false;
            }
        }
        true
    })
    .await;
}

/// A replica that reaches `db`'s PostgreSQL only through a fault proxy (to cut that link).
async fn replica_behind_a_proxy(db: &TestDb, name: &str) -> (Proxy, Coordinator) {
    let pg_port = db.config().get_ports()[0];
    let proxy = Proxy::start(format!("127.0.0.1:{pg_port}")).await.unwrap();
    let through_proxy = format!(
        "host=127.0.0.1 port={} user=postgres dbname={}",
        proxy.port(),
        db.name
    );
    let replica = Coordinator::start_with_conninfo(&through_proxy, name, &[]).await;
    (proxy, replica)
}

fn url(c: &Coordinator) -> Url {
    Url::parse(&c.base).unwrap()
}

#[tokio::test]
async fn a_replica_cut_off_from_postgres_is_detected_within_2_s_and_serves_again_within_10_s_of_the_heal()
 {
    let db = TestDb::new("partition_pg").await;
    let sql = db.client().await;
    sql.execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    // Replica r0 reaches PostgreSQL only through the proxy; r1 directly.
    let (proxy, cut) = replica_behind_a_proxy(&db, "partition_pg-r0").await;
    let other = Coordinator::start(&db, "partition_pg-r1", &[]).await;
    let replicas = vec![url(&cut), url(&other)];
    let claims: Claims = Arc::default();
    let mut executors = Vec::new();
    for (i, start_at) in [(0, 0), (1, 1), (2, 0), (3, 1)] {
        let name = format!("e{i}");
        let token = add_executor(&sql, "c", &name, "t", None).await;
        executors.push(run_executor(
            &name,
            token,
            replicas.clone(),
            start_at,
            claims.clone(),
        ));
    }
    parked(&[(&cut, 2), (&other, 2)]).await;
    let before = submit(&sql, 20).await;
    all_succeeded(&sql, &before).await;
    // Cut only once every executor is parked again: a claim racing the cut would (rightly)
    // wait for the heal, and this test is about work submitted during the cut.
    parked(&[(&cut, 2), (&other, 2)]).await;

    let cut_at = Instant::now();
    proxy.blackhole().await;
    // Work submitted the moment the link dies is served by the replica that still reaches
    // PostgreSQL.
    let during = submit(&sql, 20).await;
    let (detected, served_during) = tokio::join!(
        time_until("the replica notices its dead link", cut_at, || async {
            cut.metric("colony_listener_connected", &[]).await == 0.0
        }),
        async {
            all_succeeded(&sql, &during).await;
            cut_at.elapsed()
        }
    );

    let healed_at = Instant::now();
    proxy.heal().await;
    let recovered = time_until("the replica is healthy again", healed_at, || async {
        cut.metric("colony_listener_connected", &[]).await == 1.0
            && matches!(cut.http.get(cut.url("/healthz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    let after = submit(&sql, 20).await;
    all_succeeded(&sql, &after).await;
    println!(
        "replica-postgres cut: detected in {detected:?}, work submitted at the cut done after \
         {served_during:?}; healthy {recovered:?} after the heal"
    );
    assert!(
        detected < DETECTION,
        "detected after {detected:?}, bound {DETECTION:?}"
    );
    assert!(
        recovered < RECOVERY,
        "recovered after {recovered:?}, bound {RECOVERY:?}"
    );
    let ids: Vec<i64> = [before, during, after].concat();
    each_exactly_once(&sql, &claims, &ids, false).await;
    for (_, task) in executors {
        task.abort();
    }
}

#[tokio::test]
async fn an_executor_cut_off_from_its_replica_moves_to_another_within_2_s() {
    let db = TestDb::new("partition_exec").await;
    let sql = db.client().await;
    sql.execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    let near = Coordinator::start(&db, "partition_exec-r0", &[]).await;
    let far = Coordinator::start(&db, "partition_exec-r1", &[]).await;
    // The executor reaches r0 only through the proxy.
    let proxy = Proxy::start(near.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let via_proxy = Url::parse(&format!("http://{}", proxy.addr())).unwrap();
    let claims: Claims = Arc::default();
    let token = add_executor(&sql, "c", "e", "t", None).await;
    let (client, task) = run_executor("e", token, vec![via_proxy, url(&far)], 0, claims.clone());
    parked(&[(&near, 1)]).await;
    let before = submit(&sql, 10).await;
    all_succeeded(&sql, &before).await;
    parked(&[(&near, 1)]).await;

    let cut_at = Instant::now();
    proxy.blackhole().await;
    let detected = time_until("the executor parks on r1", cut_at, || async {
        far.metric("colony_parked_waiters", &[("kind", "broadcast")])
            .await
            == 1.0
    })
    .await;
    // The long-poll the client left on r0 is still parked there (its FIN is lost in the cut):
    // r0 may claim work for it and answer into the dead link. That work comes back when its
    // claim lease runs out (15 s by default; the test below has its own), or at its execution
    // deadline: these processes have one of 2 s, so they finish within the default wait.
    let during = submit_with(&sql, 10, json!({"maxexectime": 2, "maxretries": 3})).await;
    all_succeeded(&sql, &during).await;

    let healed_at = Instant::now();
    proxy.heal().await;
    // Back in service: the executor's client can reach r0 again (it stays on r1 while r1
    // answers; any call that fails over may pick r0).
    let recovered = time_until("r0 reachable again", healed_at, || async {
        client
            .health()
            .await
            .first()
            .is_some_and(|(_, h)| *h == colony_client::Health::Healthy)
    })
    .await;
    let after = submit(&sql, 10).await;
    all_succeeded(&sql, &after).await;
    println!("executor-replica cut: moved in {detected:?}; reachable {recovered:?} after the heal");
    assert!(
        detected < DETECTION,
        "moved after {detected:?}, bound {DETECTION:?}"
    );
    assert!(recovered < RECOVERY);
    let ids: Vec<i64> = [before, during, after].concat();
    each_exactly_once(&sql, &claims, &ids, true).await;
    task.abort();
}

/// Whether every process in `ids` has SUCCEEDED within `bound` (polled).
async fn succeeded_within(sql: &Sql, ids: &[i64], bound: Duration) -> bool {
    within(bound, || async {
        let done: i64 = sql
            .query_one(
                "SELECT count(*) FROM colony_assign.processes WHERE id = ANY($1) AND state = 2",
                &[&ids],
            )
            .await
            .unwrap()
            .get(0);
        done == ids.len() as i64
    })
    .await
}

/// Fixed defect 1 (docs/RELIABILITY.md, "Partitions"): a replica that has lost PostgreSQL used
/// to keep the long-polls parked on it (and accept new ones it could not serve), so its
/// executors sat idle until their long-poll timed out. Now a parked long-poll answers 503 when
/// the LISTEN connection is lost and not back within a moment, and the client moves to another
/// replica. The bound is the detection bound twice: the replica's detection (two ping
/// intervals) plus the client's move and a claim.
#[tokio::test]
async fn executors_parked_on_a_replica_cut_off_from_postgres_are_served_elsewhere_within_4_s() {
    let db = TestDb::new("partition_parked").await;
    let sql = db.client().await;
    sql.execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    let (proxy, cut) = replica_behind_a_proxy(&db, "partition_parked-r0").await;
    let other = Coordinator::start(&db, "partition_parked-r1", &[]).await;
    let claims: Claims = Arc::default();
    let token = add_executor(&sql, "c", "e", "t", None).await;
    let (_, task) = run_executor("e", token, vec![url(&cut), url(&other)], 0, claims);
    parked(&[(&cut, 1)]).await;
    proxy.blackhole().await;
    let ids = submit(&sql, 1).await;
    let served = succeeded_within(&sql, &ids, DETECTION * 2).await;
    proxy.heal().await;
    task.abort();
    assert!(
        served,
        "the only executor, parked on the cut replica, was not served by the other within {:?}",
        DETECTION * 2
    );
}

/// Fixed defect 2 (docs/RELIABILITY.md, "Partitions"): work a replica claims for a long-poll
/// whose link to the executor has just died is written into the dead connection; the replica
/// counts it as delivered (so nothing gives it back), the executor's client moves to another
/// replica, and the process stayed RUNNING for a live executor that never received it — until
/// its `maxexectime` (a retry spent), or forever without one. The long-poll the client
/// abandoned stays parked on the cut replica too (the client's FIN is lost in the cut), so work
/// submitted after the client has moved can still be claimed for it there. The same window
/// opens when a replica is killed (-9) between a claim and its answer. Now the claim carries a
/// lease (here 2 s) that nobody acknowledges: the reaper gives the process back, no retry
/// spent, and the executor gets it on the other replica.
#[tokio::test]
async fn a_claim_answered_into_a_dead_link_is_not_stranded() {
    let db = TestDb::new("partition_stranded").await;
    let sql = db.client().await;
    sql.execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    sql.execute(
        "SELECT colony_assign.configure('c', claim_lease => interval '2 seconds')",
        &[],
    )
    .await
    .unwrap();
    let near = Coordinator::start(&db, "partition_stranded-r0", &[]).await;
    let far = Coordinator::start(&db, "partition_stranded-r1", &[]).await;
    let proxy = Proxy::start(near.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let via_proxy = Url::parse(&format!("http://{}", proxy.addr())).unwrap();
    let claims: Claims = Arc::default();
    let token = add_executor(&sql, "c", "e", "t", None).await;
    let (_, task) = run_executor("e", token, vec![via_proxy, url(&far)], 0, claims);
    parked(&[(&near, 1)]).await;
    proxy.blackhole().await;
    // r0 still reaches PostgreSQL: it wakes the parked long-poll, claims, and answers into
    // the dead link.
    let ids = submit(&sql, 1).await;
    parked(&[(&far, 1)]).await;
    proxy.heal().await;
    let served = succeeded_within(&sql, &ids, RECOVERY).await;
    let state: (i32, Option<String>, i32) = {
        let row = sql
            .query_one(
                "SELECT state, assigned_executor, retries FROM colony_assign.processes WHERE id = $1",
                &[&ids[0]],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    task.abort();
    assert!(
        served,
        "process {} still (state, executor, retries) = {state:?} {RECOVERY:?} after the heal",
        ids[0]
    );
    assert_eq!(state.2, 0, "no retry spent");
}

/// Fixed defect 3 (docs/RELIABILITY.md, "Partitions"): colony-client's `close` treated a 409
/// `not running (it is SUCCESS)` after an attempt whose answer was lost as its own close
/// applied — but the process may have been requeued meanwhile (its deadline passed while the
/// first attempt hung on a replica cut off from PostgreSQL) and closed by another executor.
/// Now the 409 names the executor that finished it (`..., finished by "b")`), and only the
/// executor's own close counts. Found by the chaos run.
#[tokio::test]
async fn a_close_lost_in_a_cut_is_not_reported_applied_when_another_executor_closed_the_process() {
    let db = TestDb::new("partition_close").await;
    let sql = db.client().await;
    sql.execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    let (proxy, cut) = replica_behind_a_proxy(&db, "partition_close-r0").await;
    let other = Coordinator::start(&db, "partition_close-r1", &[]).await;
    let token = add_executor(&sql, "c", "a", "t", None).await;
    add_executor(&sql, "c", "b", "t", None).await;
    // Attempts time out after 5 s: longer than the process's 2 s deadline.
    let a = Client::builder(vec![url(&cut), url(&other)], token)
        .start_at(0)
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let ids = submit_with(&sql, 1, json!({"maxexectime": 2, "maxretries": 1})).await;
    let got = a.assign("c", Duration::from_secs(10), 1).await.unwrap();
    assert_eq!(got[0].id, ids[0]);
    proxy.blackhole().await;
    let id = ids[0];
    let closing = tokio::spawn({
        let a = a.clone();
        async move { a.close(id, Some(json!("a's output"))).await }
    });
    // The deadline passes while a's close hangs on r0; the reaper (r1) requeues the process
    // and b runs and closes it.
    eventually("requeued at its deadline", || async {
        count(
            &sql,
            &format!(
                "SELECT count(*) FROM colony_assign.processes WHERE id = {} AND state = 0",
                ids[0]
            ),
        )
        .await
            == 1
    })
    .await;
    let claimed = sql
        .query("SELECT id FROM colony_assign.assign('c', 'b')", &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    sql.execute(
        "SELECT colony_assign.close($1, 'b', '\"b''s output\"')",
        &[&ids[0]],
    )
    .await
    .unwrap();
    let result = closing.await.unwrap();
    proxy.heal().await;
    match result {
        Err(colony_client::Error::Api {
            status: 409,
            message,
            ..
        }) => assert!(
            message.ends_with("not running (it is SUCCESS, finished by \"b\")"),
            "the refusal names who closed it: {message}"
        ),
        other => panic!(
            "a's close was refused (b closed the process), but the client reported {other:?}"
        ),
    }
}
