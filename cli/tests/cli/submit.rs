//! `colony submit`: an argument, a file of JSON lines in batches, stdin; and input that is
//! refused, with the exit codes a script can tell apart.

use super::support::{Env, scratch, spec};
use std::fmt::Write;

#[tokio::test]
async fn submits_from_an_argument_a_file_and_stdin() {
    let env = Env::new("submit_sources").await;
    // An argument: one spec, its id on stdout.
    let out = env.run(&["submit", &spec("t", "one")]).await.ok();
    let [id] = out.ids()[..] else {
        panic!("one id: {out:?}")
    };
    assert_eq!(env.state(id).await, 0);

    // A file of 3,000 lines (and a blank one) in batches of 700, three in flight: every spec
    // submitted once, ids in input order, the rate line at the end.
    let dir = scratch("submit_sources");
    let path = dir.join("specs.jsonl");
    let mut text = String::new();
    for i in 0..3000 {
        writeln!(text, "{}", spec("t", &format!("f{i}"))).unwrap();
        if i == 1500 {
            text.push('\n');
        }
    }
    std::fs::write(&path, text).unwrap();
    let out = env
        .run(&[
            "submit",
            "--file",
            path.to_str().unwrap(),
            "--batch-size",
            "700",
            "--parallel",
            "3",
        ])
        .await
        .ok();
    let ids = out.ids();
    assert_eq!(ids.len(), 3000);
    assert!(
        out.stderr.contains("submitted 3000 processes in 5 batches"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("/s)"), "a rate: {}", out.stderr);
    // Ids come in input order (batches in flight at once get interleaved ids, so check the
    // mapping, not that they increase).
    let rows = env
        .sql
        .query(
            "SELECT id, funcname FROM colony_assign.processes WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap();
    let funcnames: std::collections::HashMap<i64, String> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(funcnames[id], format!("f{i}"));
    }
    assert_eq!(
        env.count("SELECT count(*) FROM colony_assign.processes")
            .await,
        3001
    );

    // On a terminal (script(1) gives it one), the progress bar is drawn on stderr.
    let shell_line = format!(
        "{} submit --quiet --batch-size 500 --file {}",
        super::support::COLONY,
        path.display()
    );
    let mut script = tokio::process::Command::new("script");
    script
        .args(["-qec", &shell_line, "/dev/null"])
        .env("COLONY_URLS", &env.coordinator.base)
        .env("COLONY_ADMIN_TOKEN", &env.admin)
        .env("COLONY_COLONY", "c")
        .env_remove("COLONY_TOKEN");
    let out = script.output().await.expect("run script(1)");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("% ") && tty.contains(" submitted"),
        "a progress bar: {tty:?}"
    );
    assert!(tty.contains("submitted 3000 processes"), "{tty:?}");

    // Stdin, with --json: a summary with the ids.
    let lines = format!("{}\n{}\n", spec("t", "s1"), spec("t", "s2"));
    let out = env.run_with_stdin(&["submit", "--json"], &lines).await.ok();
    let summary = out.json();
    assert_eq!(summary["submitted"], 2);
    assert_eq!(summary["ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        env.count("SELECT count(*) FROM colony_assign.processes")
            .await,
        6003
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn bad_input_is_named_and_nothing_of_its_batch_is_submitted() {
    let env = Env::new("submit_bad_input").await;
    // Line 1503 is not JSON: the three batches of 500 before it are submitted, nothing from
    // its batch (lines 1501-2000) on.
    let dir = scratch("submit_bad_input");
    let path = dir.join("specs.jsonl");
    let mut text = String::new();
    for i in 1..=2000 {
        if i == 1503 {
            text.push_str("{\"funcname\": \"broken\",\n");
        } else {
            writeln!(text, "{}", spec("t", "f")).unwrap();
        }
    }
    std::fs::write(&path, text).unwrap();
    let out = env
        .run(&[
            "submit",
            "--quiet",
            "--file",
            path.to_str().unwrap(),
            "--batch-size",
            "500",
        ])
        .await
        .code(1);
    assert!(out.stderr.contains("line 1503"), "{}", out.stderr);
    assert!(
        out.stderr.contains("1500 processes were submitted"),
        "{}",
        out.stderr
    );
    assert_eq!(
        env.count("SELECT count(*) FROM colony_assign.processes")
            .await,
        1500
    );

    // A spec the coordinator refuses (no executor type): its line is named, its batch is
    // one transaction that changed nothing.
    let lines = format!(
        "{}\n{}\n",
        spec("t", "ok"),
        r#"{"funcname": "no_conditions"}"#
    );
    let out = env.run_with_stdin(&["submit"], &lines).await.code(1);
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);
    assert!(out.stderr.contains("400"), "{}", out.stderr);
    // A line that is JSON but not an object.
    let out = env.run_with_stdin(&["submit"], "[1, 2]\n").await.code(1);
    assert!(
        out.stderr.contains("line 1: not a JSON object"),
        "{}",
        out.stderr
    );
    // A bad argument.
    env.run(&["submit", "{not json"]).await.code(1);
    assert_eq!(
        env.count("SELECT count(*) FROM colony_assign.processes")
            .await,
        1500
    );

    // An unknown colony: not found.
    let out = env
        .run(&["--colony", "nope", "submit", &spec("t", "f")])
        .await
        .code(2);
    assert!(out.stderr.contains("404"), "{}", out.stderr);
    // A wrong token: auth.
    let out = env
        .run(&["--token", "cat_wrong", "submit", &spec("t", "f")])
        .await
        .code(4);
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    // No colony at all: usage.
    let mut command = env.command(&["submit", &spec("t", "f")]);
    command.env_remove("COLONY_COLONY");
    let out = command.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no colony"));
    // A replica that is not there, with a short retry budget: unavailable.
    let out = env
        .run(&[
            "--url",
            "http://127.0.0.1:9",
            "--retry-for",
            "300ms",
            "submit",
            &spec("t", "f"),
        ])
        .await
        .code(5);
    assert!(
        out.stderr.contains("no coordinator replica"),
        "{}",
        out.stderr
    );
    assert_eq!(
        env.count("SELECT count(*) FROM colony_assign.processes")
            .await,
        1500
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn an_executor_token_submits_into_its_colony() {
    let env = Env::new("submit_executor_token").await;
    let token = env.executor("e", "t").await;
    let out = env
        .run(&[
            "--token",
            &token,
            "submit",
            &format!("[{}, {}]", spec("t", "a"), spec("t", "b")),
        ])
        .await
        .ok();
    assert_eq!(out.ids().len(), 2);
    // --url repeated: a replica that refuses connections is passed over. --in-order makes
    // the refusing replica the one tried first, every time.
    let out = env
        .run(&[
            "--url",
            "http://127.0.0.1:9",
            "--url",
            &env.coordinator.base,
            "--in-order",
            "--token",
            &token,
            "submit",
            &spec("t", "c"),
        ])
        .await
        .ok();
    assert_eq!(out.ids().len(), 1);
    // ... and tried first indeed: alone, it fails the call (exit 5), however often.
    env.run(&[
        "--url",
        "http://127.0.0.1:9",
        "--url",
        &env.coordinator.base,
        "--in-order",
        "--retry-for",
        "0s",
        "--token",
        &token,
        "submit",
        &spec("t", "c0"),
    ])
    .await
    .code(5);
    // Its token reaches no other colony: that one looks like none.
    env.run(&["colonies", "add", "d"]).await.ok();
    env.run(&[
        "--token",
        &token,
        "--colony",
        "d",
        "submit",
        &spec("t", "x"),
    ])
    .await
    .code(2);
}
