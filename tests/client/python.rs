//! examples/python/executor.py against a real coordinator: it runs what is submitted and
//! closes (or fails) each process.

use super::api::dead_url;
use super::{add_executor, count, setup, setup_with, urls};
use e2e::eventually;
use serde_json::{Value, json};

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/executor.py")
}

fn log_file(name: &str) -> std::fs::File {
    let dir = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .join("e2e-logs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::File::create(dir.join(format!("{name}.log"))).unwrap()
}

#[tokio::test]
async fn the_python_example_executor_runs_closes_and_fails_processes() {
    let (_db, sql, coordinators) = setup("client_python", 1).await;
    let token = add_executor(&sql, "py", "python").await;
    // A dead replica first, and tried first: the example must pass over it.
    let replicas = format!("{},{}", dead_url(), urls(&coordinators)[0]);
    let mut child = tokio::process::Command::new("python3")
        .arg(script())
        .args([
            "--replicas",
            &replicas,
            "--colony",
            "c",
            "--timeout",
            "2",
            "--max",
            "2",
            "--start",
            "0",
        ])
        .env("COLONY_TOKEN", &token)
        .stdout(log_file("client_python-executor-stdout"))
        .stderr(log_file("client_python-executor"))
        .kill_on_drop(true)
        .spawn()
        .expect("start python3 examples/python/executor.py");

    let spec = |funcname: &str, args: Value, kwargs: Value| {
        json!({"funcname": funcname, "args": args, "kwargs": kwargs,
               "conditions": {"executortype": "python"}})
    };
    let submitted: Vec<i64> = sql
        .query(
            "SELECT colony_assign.submit_many('c', $1)",
            &[&json!([
                spec("add", json!([2, 3, 4]), json!({})),
                spec("multiply", json!([6, 7]), json!({})),
                spec("upper", json!([]), json!({"text": "abc"})),
                spec("word_count", json!(["a b a"]), json!({})),
                spec("divide", json!([1, 0]), json!({})),
                spec("nope", json!([]), json!({})),
            ])],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(submitted.len(), 6);

    eventually("the example finished every process", || async {
        count(
            &sql,
            "SELECT count(*) FROM colony_assign.processes WHERE state IN (2, 3)",
        )
        .await
            == 6
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the example exited on its own"
    );
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let rows = sql
        .query(
            "SELECT state, output, errors, assigned_executor FROM colony_assign.processes ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let outcome: Vec<(i32, Option<Value>, Option<Vec<String>>)> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.get::<_, Option<String>>(3).as_deref(), Some("py"));
            (r.get(0), r.get(1), r.get(2))
        })
        .collect();
    assert_eq!(outcome[0], (2, Some(json!(9)), None));
    assert_eq!(outcome[1], (2, Some(json!(42)), None));
    assert_eq!(outcome[2], (2, Some(json!("ABC")), None));
    assert_eq!(outcome[3], (2, Some(json!({"a": 2, "b": 1})), None));
    let (state, output, errors) = &outcome[4];
    assert_eq!((*state, output), (3, &None));
    assert_eq!(
        errors.as_ref().unwrap()[0],
        "ZeroDivisionError: division by zero"
    );
    assert!(errors.as_ref().unwrap()[1].contains("Traceback"));
    let (state, _, errors) = &outcome[5];
    assert_eq!(*state, 3);
    assert!(
        errors.as_ref().unwrap()[0].starts_with("LookupError: unknown function 'nope'"),
        "{errors:?}"
    );
}

/// Where `log_file(name)` writes.
fn log_path(name: &str) -> std::path::PathBuf {
    std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .join("e2e-logs")
        .join(format!("{name}.log"))
}

#[tokio::test]
async fn the_python_example_heartbeats_the_processes_it_has_not_finished_within_their_lease() {
    let (_db, sql, coordinators) =
        setup_with("client_python_lease", &[&["--reap-interval-ms", "200"]]).await;
    // A 2 s lease; two processes of 3 s each, received in one long-poll: the first runs past
    // its lease, the second waits behind it past its own. The example's half-lease heartbeat
    // names both (the one running, the one waiting), or they would be given back.
    sql.execute(
        "SELECT colony_assign.configure('c', claim_lease => interval '2 seconds')",
        &[],
    )
    .await
    .unwrap();
    let token = add_executor(&sql, "py", "python").await;
    let sleep = json!({"funcname": "sleep", "args": [3], "maxexectime": 600, "maxretries": 0,
                       "conditions": {"executortype": "python"}});
    let ids: Vec<i64> = sql
        .query(
            "SELECT colony_assign.submit_many('c', $1)",
            &[&json!([sleep, sleep])],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids.len(), 2);
    let mut child = tokio::process::Command::new("python3")
        .arg(script())
        .args([
            "--replicas",
            urls(&coordinators)[0].as_str(),
            "--colony",
            "c",
            "--timeout",
            "2",
            "--max",
            "2",
        ])
        .env("COLONY_TOKEN", &token)
        .stdout(log_file("client_python_lease-executor-stdout"))
        .stderr(log_file("client_python_lease-executor"))
        .kill_on_drop(true)
        .spawn()
        .expect("start python3 examples/python/executor.py");
    eventually("the example closed both processes", || async {
        count(
            &sql,
            "SELECT count(*) FROM colony_assign.processes WHERE state = 2",
        )
        .await
            == 2
    })
    .await;
    // The example logs a close after it returned.
    let closed_line = |id: i64| format!("process {id} (sleep) -> 3");
    eventually("the example logged both closes", || async {
        let log = std::fs::read_to_string(log_path("client_python_lease-executor")).unwrap();
        ids.iter().all(|&id| log.contains(&closed_line(id)))
    })
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // Each ran once and was closed the first time: none was given back in between.
    let log = std::fs::read_to_string(log_path("client_python_lease-executor")).unwrap();
    assert!(!log.contains("could not close"), "{log}");
    for id in ids {
        let runs = log.matches(&format!("process {id} (sleep) -> 3")).count();
        assert_eq!(runs, 1, "process {id}: {log}");
    }
}
