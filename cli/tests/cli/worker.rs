//! `colony worker`: a real `sh -c` per process; success, failure, concurrency, and a graceful
//! stop on SIGTERM that finishes what runs.

use super::support::{Env, scratch};
use serde_json::{Value, json};
use std::process::Stdio;
use testkit::{DEADLINE, eventually};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};

/// Reads the worker's stderr until a line contains `needle`.
async fn wait_for_line(lines: &mut Lines<BufReader<ChildStderr>>, needle: &str) {
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the worker printed {needle:?}");
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().expect("running") as i32, signal) };
}

async fn exit_code(child: &mut Child) -> Option<i32> {
    tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the worker exited in time")
        .unwrap()
        .code()
}

async fn process(env: &Env, id: i64) -> Value {
    env.run(&["get", &id.to_string(), "--json"])
        .await
        .ok()
        .json()
}

const SCRIPT: &str = r#"input=$(cat)
case "$COLONY_FUNCNAME" in
  json) printf '{"got": %s}\n' "$input" ;;
  text) echo "hello world" ;;
  bad) echo "some noise"; echo "it broke" >&2; exit 3 ;;
esac"#;

#[tokio::test]
async fn runs_a_shell_command_per_process() {
    let env = Env::new("worker_runs").await;
    let token = env.executor("sh-1", "sh").await;
    let submit = |funcname: &str| {
        json!({"funcname": funcname, "args": [1, "two"], "kwargs": {"k": true},
               "conditions": {"executortype": "sh"}})
        .to_string()
    };
    let mut ids = Vec::new();
    for f in ["json", "text", "bad"] {
        ids.push(env.run(&["submit", &submit(f)]).await.ok().ids()[0]);
    }
    let mut worker = env
        .command(&[
            "--token",
            &token,
            "worker",
            "--type",
            "sh",
            "--concurrency",
            "2",
            "--",
            "sh",
            "-c",
            SCRIPT,
        ])
        .spawn()
        .unwrap();
    let sql = &env.sql;
    eventually("the worker finished all three", || async {
        sql.query_one(
            "SELECT count(*) FROM colony_assign.processes WHERE state IN (2, 3)",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
            == 3
    })
    .await;

    // JSON on stdout is the output; the command got the process on stdin.
    let json_process = process(&env, ids[0]).await;
    assert_eq!(json_process["state"], 2);
    let got = &json_process["output"]["got"];
    assert_eq!(got["id"], ids[0]);
    assert_eq!(got["funcname"], "json");
    assert_eq!(got["args"], json!([1, "two"]));
    assert_eq!(got["kwargs"], json!({"k": true}));
    // Other text is wrapped as a string.
    let text_process = process(&env, ids[1]).await;
    assert_eq!(text_process["state"], 2);
    assert_eq!(text_process["output"], "hello world");
    // A non-zero exit fails it with stderr's end.
    let bad = process(&env, ids[2]).await;
    assert_eq!(bad["state"], 3);
    let error = bad["errors"][0].as_str().unwrap();
    assert!(
        error.contains("exit status 3") && error.contains("it broke"),
        "{error}"
    );
    assert!(
        !error.contains("some noise"),
        "stdout is not the error: {error}"
    );

    signal(&worker, libc::SIGTERM);
    assert_eq!(exit_code(&mut worker).await, Some(0));
}

#[tokio::test]
async fn sigterm_stops_polling_and_finishes_running_processes() {
    let env = Env::new("worker_stop").await;
    let dir = scratch("worker_stop");
    // Each process marks that it started, then waits for the test's release file.
    let script = r#"cat >/dev/null
touch "$DIR/started-$COLONY_PROCESS_ID"
while [ ! -e "$DIR/release" ]; do sleep 0.02; done
echo "{\"done\": $COLONY_PROCESS_ID}""#;
    let spec = r#"{"funcname": "slow", "conditions": {"executortype": "slow"}}"#;
    let ids = env
        .run_with_stdin(&["submit"], &format!("{spec}\n{spec}\n"))
        .await
        .ok()
        .ids();
    // Only the admin token: the worker registers its executor, and removes it at the end.
    let mut worker = env
        .command(&[
            "worker",
            "--type",
            "slow",
            "--name",
            "w1",
            "--concurrency",
            "2",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("DIR", &dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(worker.stderr.take().unwrap()).lines();
    wait_for_line(&mut stderr, "registered executor w1").await;
    // Both run at once (concurrency 2).
    eventually("both processes started", || async {
        ids.iter()
            .all(|id| dir.join(format!("started-{id}")).exists())
    })
    .await;
    let listed = env.run(&["executors", "ls", "--json"]).await.ok().json();
    assert_eq!(listed[0]["name"], "w1");
    assert_eq!(listed[0]["running"], 2);

    signal(&worker, libc::SIGTERM);
    wait_for_line(&mut stderr, "stopping; waiting for 2 running process(es)").await;
    // Work submitted now is not taken: the worker no longer polls.
    let later = env.run(&["submit", spec]).await.ok().ids()[0];
    std::fs::write(dir.join("release"), "").unwrap();
    wait_for_line(&mut stderr, "colony worker: stopped").await;
    assert_eq!(exit_code(&mut worker).await, Some(0));
    for id in &ids {
        let p = process(&env, *id).await;
        assert_eq!(p["state"], 2, "{p}");
        assert_eq!(p["output"], json!({"done": id}));
    }
    assert_eq!(env.state(later).await, 0, "the later process still waits");
    let listed = env.run(&["executors", "ls", "--json"]).await.ok().json();
    assert_eq!(listed, json!([]), "the registered executor was removed");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_second_signal_kills_running_commands_and_fails_their_processes() {
    let env = Env::new("worker_kill").await;
    let dir = scratch("worker_kill");
    let token = env.executor("k-1", "stuck").await;
    let script = r#"touch "$DIR/started-$COLONY_PROCESS_ID"
while true; do sleep 0.02; done"#;
    let id = env
        .run(&[
            "submit",
            r#"{"funcname": "stuck", "conditions": {"executortype": "stuck"}}"#,
        ])
        .await
        .ok()
        .ids()[0];
    let mut worker = env
        .command(&[
            "--token", &token, "worker", "--type", "stuck", "--", "sh", "-c", script,
        ])
        .env("DIR", &dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(worker.stderr.take().unwrap()).lines();
    let started = dir.join(format!("started-{id}"));
    eventually("the command started", || async { started.exists() }).await;
    signal(&worker, libc::SIGTERM);
    wait_for_line(&mut stderr, "stopping; waiting for 1 running process(es)").await;
    signal(&worker, libc::SIGTERM);
    wait_for_line(&mut stderr, "stopped at once").await;
    assert_eq!(exit_code(&mut worker).await, Some(1));
    let p = process(&env, id).await;
    assert_eq!(p["state"], 3, "{p}");
    assert!(
        p["errors"][0].as_str().unwrap().contains("was killed"),
        "{p}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A worker killed (-9) before it could remove the executor it registered: its process stays
/// RUNNING, a second worker of that name is refused (exit 3) rather than adopting it, and
/// removing the executor gives the process back (WAITING, no retry counted) — docs/cli.md.
#[tokio::test]
async fn a_killed_workers_executor_refuses_a_second_start_until_removed_which_gives_its_work_back()
{
    let env = Env::new("worker_killed").await;
    let dir = scratch("worker_killed");
    // The command outlives the killed worker; it ends when the test removes its directory.
    let script = r#"cat >/dev/null
touch "$DIR/started-$COLONY_PROCESS_ID"
while [ -d "$DIR" ]; do sleep 0.02; done"#;
    let id = env
        .run(&[
            "submit",
            r#"{"funcname": "slow", "conditions": {"executortype": "slow"}}"#,
        ])
        .await
        .ok()
        .ids()[0];
    let mut worker = env
        .command(&[
            "worker", "--type", "slow", "--name", "w1", "--", "sh", "-c", script,
        ])
        .env("DIR", &dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = dir.join(format!("started-{id}"));
    eventually("the command started", || async { started.exists() }).await;
    signal(&worker, libc::SIGKILL);
    assert_eq!(exit_code(&mut worker).await, None, "killed by a signal");
    assert_eq!(env.state(id).await, 1, "still RUNNING for w1");

    let again = env
        .run(&["worker", "--type", "slow", "--name", "w1", "--", "true"])
        .await
        .code(3);
    assert!(again.stderr.contains("w1"), "{}", again.stderr);
    assert_eq!(
        env.state(id).await,
        1,
        "the refused worker took nothing over"
    );

    env.run(&["executors", "rm", "w1"]).await.ok();
    let p = process(&env, id).await;
    assert_eq!(p["state"], 0, "{p}");
    assert_eq!(p["retries"], 0, "{p}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_worker_fails_over_when_its_replica_stops() {
    let mut env = Env::new("worker_failover").await;
    let mut second = testkit::Coordinator::start(&env._db, "cli-worker_failover-b", &[]).await;
    let token = env.executor("f-1", "sh").await;
    let urls = format!("{},{}", env.coordinator.base, second.base);
    let spec = r#"{"funcname": "f", "conditions": {"executortype": "sh"}}"#;
    let mut worker = env
        .command(&[
            "--url",
            &urls,
            "--token",
            &token,
            "worker",
            "--type",
            "sh",
            "--",
            "sh",
            "-c",
            "cat >/dev/null; echo 1",
        ])
        .spawn()
        .unwrap();
    let first = env.run(&["--url", &urls, "submit", spec]).await.ok().ids()[0];
    let sql = &env.sql;
    let done = |id: i64| async move {
        sql.query_one(
            "SELECT state FROM colony_assign.processes WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get::<_, i32>(0)
            == 2
    };
    eventually("the first process done", || done(first)).await;
    // The replica the worker is parked on goes away: its long-poll moves to the other one.
    const PARKED: &str = "colony_parked_waiters";
    let (a, b) = (&env.coordinator, &second);
    eventually("the worker parked on a replica", || async {
        a.metric(PARKED, &[]).await + b.metric(PARKED, &[]).await >= 1.0
    })
    .await;
    if env.coordinator.metric(PARKED, &[]).await >= 1.0 {
        env.coordinator.terminate().await;
    } else {
        second.terminate().await;
    }
    let later = env.run(&["--url", &urls, "submit", spec]).await.ok().ids()[0];
    eventually("the later process done through the other replica", || {
        done(later)
    })
    .await;
    signal(&worker, libc::SIGTERM);
    assert_eq!(exit_code(&mut worker).await, Some(0));
}
