//! Faults: the LISTEN connection killed, PostgreSQL restarted under load, the database gone.

use super::{add_executor, count, total};
use e2e::{Coordinator, HttpExecutor, PrivateCluster, connect_with, eventually, spec};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn a_terminated_listen_connection_is_replaced_and_nothing_submitted_meanwhile_is_missed() {
    let (db, client, coordinators) = super::setup("coord_listen_killed", 1, &[]).await;
    let coordinator = &coordinators[0];
    let token = add_executor(&client, "c", "e", "t", Some("A")).await;
    let executor = HttpExecutor::new(coordinator, &token);
    let poll = tokio::spawn(async move { executor.assign("c", 60, 1).await });
    eventually("parked", || async {
        coordinator
            .metric("colony_parked_waiters", &[("kind", "location")])
            .await
            == 1.0
    })
    .await;
    // Kill the LISTEN backend and submit in the same breath: the notification goes nowhere.
    let killed = count(
        &client,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = '{}' AND application_name = 'colony-coordinator {} listen'",
            db.name, "coord_listen_killed-r0"
        ),
    )
    .await;
    assert_eq!(
        killed, 1,
        "found the LISTEN connection by its application_name"
    );
    let id: i64 = client
        .query_one(
            "SELECT colony_assign.submit('c', $1)",
            &[&spec("t", json!({"locationname": "A"}), json!({}))],
        )
        .await
        .unwrap()
        .get(0);
    let got = tokio::time::timeout(e2e::DEADLINE, poll)
        .await
        .expect("served in time")
        .unwrap();
    assert_eq!(
        got[0]["id"].as_i64(),
        Some(id),
        "the parked executor got the work anyway"
    );
    eventually("reconnected", || async {
        coordinator
            .metric("colony_listener_reconnects_total", &[])
            .await
            == 1.0
            && coordinator.metric("colony_listener_connected", &[]).await == 1.0
    })
    .await;
}

#[tokio::test]
async fn postgres_restarted_under_load_loses_nothing_and_fails_fast_while_down() {
    let cluster = PrivateCluster::start("restart").await;
    let (admin, _) = connect_with(&cluster.config()).await;
    admin
        .execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    let coordinators = vec![
        Coordinator::start_with_conninfo(&cluster.conninfo(), "coord_restart-r0", &[]).await,
        Coordinator::start_with_conninfo(&cluster.conninfo(), "coord_restart-r1", &[]).await,
    ];
    let done = Arc::new(Mutex::new(Vec::<i64>::new()));
    let mut workers = Vec::new();
    for (r, coordinator) in coordinators.iter().enumerate() {
        for k in 0..3 {
            let executor = HttpExecutor::new(
                coordinator,
                &add_executor(&admin, "c", &format!("e{r}{k}"), "t", None).await,
            );
            let done = done.clone();
            workers.push(tokio::spawn(async move {
                tolerant_worker(executor, done).await
            }));
        }
    }
    // A claim whose answer died with the server connection is requeued by its short deadline:
    // by the cluster's background reaper, or the coordinators' own until that has started.
    let submit = |n: usize| {
        let specs: Vec<Value> = (0..n)
            .map(|_| spec("t", json!({}), json!({"maxexectime": 3, "maxretries": -1})))
            .collect();
        Value::Array(specs)
    };
    for _ in 0..5 {
        admin
            .query("SELECT colony_assign.submit_many('c', $1)", &[&submit(200)])
            .await
            .unwrap();
    }
    eventually("load under way", || async {
        done.lock().unwrap().len() >= 100
    })
    .await;

    cluster.stop();
    // While the database is gone: fast 503s with JSON bodies, and an unhealthy /healthz.
    let probe = HttpExecutor::new(&coordinators[0], "cat_whatever");
    let started = std::time::Instant::now();
    let response = probe
        .http
        .get(coordinators[0].url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["database"], "unreachable");
    let response = probe
        .http
        .post(coordinators[0].url("/v1/colonies/c/processes"))
        .bearer_auth("cat_whatever")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "failed fast"
    );

    cluster.start_again();
    let (admin, _) = connect_with(&cluster.config()).await;
    for _ in 0..5 {
        admin
            .query("SELECT colony_assign.submit_many('c', $1)", &[&submit(200)])
            .await
            .unwrap();
    }
    eventually("every process done after the restart", || async {
        count(&admin, "SELECT succeeded FROM colony_assign.stats('c')").await == 2000
    })
    .await;
    eventually("both replicas reconnected", || async {
        total(&coordinators, "colony_listener_reconnects_total", &[]).await >= 2.0
    })
    .await;
    for worker in workers {
        worker.abort();
    }
    // The database is the truth for "nothing lost" (a close whose 204 died with the server
    // still counts); the executors' own record shows nothing was completed twice.
    let done = done.lock().unwrap();
    let unique: HashSet<_> = done.iter().collect();
    assert_eq!(unique.len(), done.len(), "nothing completed twice");
    assert!(
        done.len() >= 1900,
        "most closes were acknowledged ({})",
        done.len()
    );
}

/// An executor that keeps going through 503s and dropped connections, like a real one.
async fn tolerant_worker(executor: HttpExecutor, done: Arc<Mutex<Vec<i64>>>) {
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(50));
    loop {
        let response = executor
            .http
            .post(format!(
                "{}/v1/colonies/c/assign?timeout=5&max=5",
                executor.base
            ))
            .bearer_auth(&executor.token)
            .send()
            .await;
        let Ok(response) = response else {
            pause().await;
            continue;
        };
        if response.status() != 200 {
            if response.status() != 204 {
                pause().await;
            }
            continue;
        }
        let Ok(processes) = response.json::<Vec<Value>>().await else {
            continue;
        };
        for process in processes {
            let id = process["id"].as_i64().unwrap();
            // Retry the close until it is recorded (204) or the process is no longer ours
            // (409/403: the reaper requeued it after a lost answer; someone else runs it).
            loop {
                let closed = executor
                    .http
                    .post(format!("{}/v1/processes/{id}/close", executor.base))
                    .bearer_auth(&executor.token)
                    .body("{}")
                    .send()
                    .await;
                match closed.map(|r| r.status().as_u16()) {
                    Ok(204) => {
                        done.lock().unwrap().push(id);
                        break;
                    }
                    Ok(409 | 403) => break,
                    _ => pause().await,
                }
            }
        }
    }
}

/// A pool connection the server refuses to open is 503 (retryable), whatever the SQLSTATE it
/// gives: database not accepting connections (55000), role cannot log in (28000), too many
/// connections (53300). Raised by a SQL function those would be answers (409, 401, 500); at
/// connect time they only mean that this replica cannot reach the database now.
#[tokio::test]
async fn a_connection_the_server_refuses_to_open_is_503_whatever_its_sqlstate() {
    let db = e2e::TestDb::new("coord_refused_open").await;
    let admin = db.client().await;
    admin
        .execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    let role = "coord_refused_open_role";
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             ALTER ROLE {role} LOGIN CONNECTION LIMIT -1;
             GRANT colony_assign_coordinator TO {role};"
        ))
        .await
        .unwrap();
    let port = db.config().get_ports()[0];
    let conninfo = format!("host=127.0.0.1 port={port} user={role} dbname={}", db.name);
    let cluster = {
        let mut config = db.config();
        config.dbname("postgres");
        connect_with(&config).await.0
    };
    let coordinator =
        Coordinator::start_with_conninfo(&conninfo, "coord_refused_open-r0", &["--pool-size", "1"])
            .await;
    let token = add_executor(&admin, "c", "e", "t", None).await;
    let id: i64 = admin
        .query_one(
            "SELECT colony_assign.submit('c', $1)",
            &[&spec("t", json!({}), json!({}))],
        )
        .await
        .unwrap()
        .get(0);
    let executor = HttpExecutor::new(&coordinator, &token);
    let read = || async {
        executor
            .http
            .get(coordinator.url(&format!("/v1/processes/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(read().await.status(), 200, "served before the faults");
    let terminate_pool = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE usename = '{role}' AND application_name NOT LIKE '% listen'"
    );
    for (sqlstate, refuse, allow) in [
        (
            "55000",
            format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", db.name),
            format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", db.name),
        ),
        (
            "28000",
            format!("ALTER ROLE {role} NOLOGIN"),
            format!("ALTER ROLE {role} LOGIN"),
        ),
        (
            "53300",
            format!("ALTER ROLE {role} CONNECTION LIMIT 0"),
            format!("ALTER ROLE {role} CONNECTION LIMIT -1"),
        ),
    ] {
        // ALTER DATABASE cannot disallow connections to the database it runs in.
        cluster.batch_execute(&refuse).await.unwrap();
        count(&admin, &terminate_pool).await;
        // The first requests may still find terminated connections in the pool: a call sent
        // on one whose session the server ended is 504 (its outcome is unknown to the
        // coordinator, which cannot tell a read from a write there), or 503 when the pool
        // noticed first; then a new connection must be opened, and the server refuses it.
        let mut refused_with_sqlstate = false;
        for attempt in 0..10 {
            let response = read().await;
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            let message = body["error"]["message"].as_str().unwrap_or_default();
            if status == 504 {
                assert_eq!(
                    body["error"]["code"], "outcome_unknown",
                    "{sqlstate}: {body}"
                );
                assert!(
                    message.contains("SQLSTATE 57P01") || message.contains("connection closed"),
                    "{sqlstate}: attempt {attempt}: a 504 only for a terminated session: {body}"
                );
                continue;
            }
            assert_eq!(
                status, 503,
                "{sqlstate}: attempt {attempt} answered {status} {body}"
            );
            assert_eq!(body["error"]["code"], "unavailable", "{sqlstate}: {body}");
            if body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("SQLSTATE {sqlstate}")))
            {
                refused_with_sqlstate = true;
                break;
            }
        }
        assert!(
            refused_with_sqlstate,
            "a refused connection's SQLSTATE {sqlstate} is in the message"
        );
        cluster.batch_execute(&allow).await.unwrap();
        eventually(&format!("served again after {sqlstate}"), || async {
            read().await.status() == 200
        })
        .await;
    }
}
