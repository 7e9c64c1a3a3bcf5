//! `colony ps|get|logs|cancel|workflow show|stats`: reading what the system holds.

use super::support::{Env, spec};
use colony_client::{Client, Url};
use serde_json::{Value, json};
use std::process::Stdio;
use testkit::{DEADLINE, HttpExecutor};
use tokio::io::{AsyncBufReadExt, BufReader};

fn ids_of(listing: &Value) -> Vec<i64> {
    listing["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn ps_filters_pages_and_prints_json_or_a_table() {
    let env = Env::new("ps").await;
    let located =
        r#"{"funcname": "g", "conditions": {"executortype": "gpu", "locationname": "edge"}}"#;
    let cpu = env
        .run_with_stdin(&["submit"], &format!("{}\n", spec("cpu", "c")).repeat(25))
        .await
        .ok()
        .ids();
    let gpu = env
        .run_with_stdin(&["submit"], &format!("{located}\n").repeat(5))
        .await
        .ok()
        .ids();

    // Newest first, every process, followed across pages of 7.
    let all = env
        .run(&["ps", "--all", "--page-size", "7", "--json"])
        .await
        .ok();
    let mut expected: Vec<i64> = cpu.iter().chain(&gpu).copied().collect();
    expected.reverse();
    assert_eq!(ids_of(&all.json()), expected);
    assert_eq!(all.json()["next"], Value::Null);

    // --limit stops early and hands back a cursor that continues exactly after.
    let first = env
        .run(&["ps", "--limit", "12", "--page-size", "5", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(ids_of(&first), expected[..12]);
    let cursor = first["next"].as_str().expect("a next cursor").to_owned();
    let rest = env
        .run(&["ps", "--all", "--after", &cursor, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(ids_of(&rest), expected[12..]);

    // Filters: type, location, state, time.
    let by_type = env
        .run(&["ps", "--type", "gpu", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(ids_of(&by_type).len(), 5);
    let by_location = env
        .run(&["ps", "--location", "edge", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(ids_of(&by_location).len(), 5);
    env.run(&["cancel", &cpu[0].to_string()]).await.ok();
    let cancelled = env
        .run(&["ps", "--state", "cancelled", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(ids_of(&cancelled), [cpu[0]]);
    let ended = env.run(&["ps", "--ended", "--json"]).await.ok().json();
    assert_eq!(ids_of(&ended), [cpu[0]]);
    let recent = env
        .run(&["ps", "--since", "1h", "--all", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(ids_of(&recent).len(), 30);
    let old = env
        .run(&["ps", "--until", "1h", "--json"])
        .await
        .ok()
        .json();
    assert!(ids_of(&old).is_empty());

    // An executor that took one: --executor.
    let token = env
        .run(&[
            "executors",
            "add",
            "e3",
            "--type",
            "gpu",
            "--location",
            "edge",
        ])
        .await
        .ok()
        .stdout;
    let token2 = token.trim();
    let taken = HttpExecutor::new(&env.coordinator, token2)
        .assign("c", 5, 1)
        .await;
    assert_eq!(taken.len(), 1);
    let by_executor = env
        .run(&["ps", "--executor", "e3", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(ids_of(&by_executor), [taken[0]["id"].as_i64().unwrap()]);

    // The table: a header and one row per process.
    let table = env.run(&["ps", "--state", "running"]).await.ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", table.stdout);
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATE"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("RUNNING") && lines[1].contains("e3"),
        "{}",
        lines[1]
    );

    // ps without an admin token is a usage error (exit 1); a wrong one is refused as auth.
    let mut command = env.command(&["ps"]);
    command.env_remove("COLONY_ADMIN_TOKEN");
    let out = command.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "usage: no admin token");
    env.run(&["--admin-token", "caa_wrong", "ps"]).await.code(4);
}

#[tokio::test]
async fn ps_watch_re_renders_until_interrupted() {
    let env = Env::new("ps_watch").await;
    let id = env.run(&["submit", &spec("t", "w")]).await.ok().ids()[0];
    let mut child = env
        .command(&["ps", "--watch", "--interval", "100ms"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Two renders (two headers) show it, then Ctrl-C ends it cleanly.
    let mut renders = 0;
    let mut seen = false;
    while renders < 2 {
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("a render in time")
            .unwrap()
            .expect("more output");
        if line.starts_with("colony c, every") {
            renders += 1;
        }
        if renders == 1 && line.split_whitespace().next() == Some(id.to_string().as_str()) {
            assert!(line.contains("WAITING"), "{line}");
            seen = true;
        }
    }
    assert!(seen, "the first render shows process {id}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn get_logs_cancel_stats_and_workflow_show() {
    let env = Env::new("get_logs_cancel").await;
    let token = env.executor("e", "t").await;
    let ids = env
        .run_with_stdin(&["submit"], &format!("{}\n", spec("t", "job")).repeat(3))
        .await
        .ok()
        .ids();

    // Run one and log from it, as its executor.
    let executor = Client::new(vec![Url::parse(&env.coordinator.base).unwrap()], &token).unwrap();
    let taken = executor
        .assign("c", std::time::Duration::from_secs(5), 1)
        .await
        .unwrap();
    let running = taken[0].id;
    executor.log(running, "step one").await.unwrap();
    executor.log(running, "step two").await.unwrap();

    let got = env
        .run(&["get", &running.to_string(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(got["id"], running);
    assert_eq!(got["state"], 1);
    assert_eq!(got["assigned_executor"], "e");
    let table = env.run(&["get", &running.to_string()]).await.ok();
    assert!(table.stdout.contains("RUNNING"), "{}", table.stdout);
    assert!(
        table.stdout.contains("\"funcname\":\"job\""),
        "{}",
        table.stdout
    );

    let logs = env.run(&["logs", &running.to_string()]).await.ok();
    let lines: Vec<&str> = logs.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", logs.stdout);
    assert!(lines[0].ends_with("[e] step one"), "{}", lines[0]);
    let logs = env
        .run(&["logs", &running.to_string(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(logs[1]["message"], "step two");

    // Cancel: once, then a conflict; an unknown process is not found.
    let waiting = *ids.iter().find(|&&id| id != running).unwrap();
    let out = env.run(&["cancel", &waiting.to_string()]).await.ok();
    assert_eq!(out.stdout.trim(), format!("cancelled process {waiting}"));
    assert_eq!(env.state(waiting).await, 4);
    env.run(&["cancel", &waiting.to_string()]).await.code(3);
    env.run(&["get", "999999"]).await.code(2);
    env.run(&["logs", "999999"]).await.code(2);
    env.run(&["cancel", "999999"]).await.code(2);
    // The executor token reads its colony's processes too.
    env.run(&["--token", &token, "get", &waiting.to_string()])
        .await
        .ok();

    // Stats: counts, and the backlog per (type, location) with an admin token.
    let stats = env.run(&["stats", "--json"]).await.ok().json();
    assert_eq!(stats["stats"]["running"], 1);
    assert_eq!(stats["stats"]["waiting"], 1);
    assert_eq!(stats["stats"]["cancelled"], 1);
    assert_eq!(stats["queues"][0]["executor_type"], "t");
    assert_eq!(stats["queues"][0]["waiting"], 1);
    let table = env.run(&["stats"]).await.ok();
    assert!(
        table.stdout.contains("WAITING") && table.stdout.contains("AGE"),
        "{}",
        table.stdout
    );
    env.run(&["--colony", "nope", "stats"]).await.code(2);

    // A workflow: a -> (b, c) -> d, with a done.
    let admin = Client::new(vec![Url::parse(&env.coordinator.base).unwrap()], &env.admin).unwrap();
    let node = |name: &str, deps: &[&str]| {
        json!({"funcname": name, "nodename": name,
               "conditions": {"executortype": "wf", "dependencies": deps}})
    };
    let workflow = admin
        .submit_workflow(
            "c",
            &[
                node("a", &[]),
                node("b", &["a"]),
                node("c", &["a"]),
                node("d", &["b", "c"]),
            ],
        )
        .await
        .unwrap();
    let wf_token = env.executor("wf-1", "wf").await;
    let wf = Client::new(vec![Url::parse(&env.coordinator.base).unwrap()], &wf_token).unwrap();
    let root = wf
        .assign("c", std::time::Duration::from_secs(5), 1)
        .await
        .unwrap();
    wf.close(root[0].id, Some(json!(1))).await.unwrap();
    let shown = env
        .run(&["workflow", "show", &workflow.to_string()])
        .await
        .ok();
    let text = shown.stdout;
    assert!(
        text.starts_with(&format!("workflow {workflow} in colony c: RUNNING")),
        "{text}"
    );
    assert!(
        text.contains("a [process") && text.contains("SUCCESS"),
        "{text}"
    );
    assert!(text.contains("├── b [process"), "{text}");
    assert!(text.contains("WAITING (see above)"), "{text}");
    let json = env
        .run(&["workflow", "show", &workflow.to_string(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(json["nodes"].as_array().unwrap().len(), 4);
    env.run(&["workflow", "show", "999999"]).await.code(2);

    // ps by workflow.
    let members = env
        .run(&["ps", "--workflow", &workflow.to_string(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(ids_of(&members).len(), 4);
}
