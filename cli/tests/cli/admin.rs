//! `colony colonies|executors add|rm|ls` and `pause|resume`.

use super::support::{Env, spec};
use testkit::HttpExecutor;

#[tokio::test]
async fn colonies_and_executors_are_added_listed_and_removed() {
    let env = Env::new("admin").await;
    env.run(&["colonies", "add", "d"]).await.ok();
    // Twice: a conflict.
    env.run(&["colonies", "add", "d"]).await.code(3);
    let listed = env.run(&["colonies", "ls", "--json"]).await.ok().json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "d"]);
    let table = env.run(&["colonies", "ls"]).await.ok();
    assert!(
        table.stdout.lines().next().unwrap().starts_with("NAME"),
        "{}",
        table.stdout
    );
    assert_eq!(table.stdout.lines().count(), 3, "{}", table.stdout);

    // An executor: the token alone on stdout, and it works.
    let out = env
        .run(&[
            "--colony",
            "d",
            "executors",
            "add",
            "gpu-1",
            "--type",
            "gpu",
            "--location",
            "edge",
        ])
        .await
        .ok();
    let token = out.stdout.trim();
    assert!(token.starts_with("cat_"), "{out:?}");
    assert!(out.stderr.contains("shown this once"), "{}", out.stderr);
    assert!(
        HttpExecutor::new(&env.coordinator, token)
            .assign("d", 0, 1)
            .await
            .is_empty()
    );
    let created = env
        .run(&[
            "--colony",
            "d",
            "executors",
            "add",
            "cpu-1",
            "--type",
            "cpu",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert!(created["token"].as_str().unwrap().starts_with("cat_"));
    assert_eq!(created["location"], serde_json::Value::Null);
    env.run(&[
        "--colony",
        "d",
        "executors",
        "add",
        "cpu-1",
        "--type",
        "cpu",
    ])
    .await
    .code(3);

    let listed = env
        .run(&["--colony", "d", "executors", "ls", "--json"])
        .await
        .ok()
        .json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cpu-1", "gpu-1"]);
    assert_eq!(listed[1]["location"], "edge");
    let table = env.run(&["--colony", "d", "executors", "ls"]).await.ok();
    assert!(
        table.stdout.contains("gpu-1") && table.stdout.contains("edge"),
        "{}",
        table.stdout
    );

    // Removal: the token stops working, a second removal is not found.
    env.run(&["--colony", "d", "executors", "rm", "gpu-1"])
        .await
        .ok();
    env.run(&["--colony", "d", "executors", "rm", "gpu-1"])
        .await
        .code(2);
    let out = env
        .run(&[
            "--token",
            token,
            "--colony",
            "d",
            "submit",
            &spec("gpu", "f"),
        ])
        .await
        .code(4);
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    env.run(&["colonies", "rm", "d"]).await.ok();
    env.run(&["colonies", "rm", "d"]).await.code(2);
    env.run(&["--colony", "d", "executors", "ls"]).await.code(2);
    let listed = env.run(&["colonies", "ls", "--json"]).await.ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // An executor token is not an admin's: auth.
    let worker = env.executor("w", "t").await;
    env.run(&["--admin-token", &worker, "colonies", "add", "x"])
        .await
        .code(4);
}

#[tokio::test]
async fn pause_stops_assignment_and_resume_restarts_it() {
    let env = Env::new("pause").await;
    let token = env.executor("e", "t").await;
    let id = env.run(&["submit", &spec("t", "f")]).await.ok().ids()[0];
    let out = env.run(&["pause"]).await.ok();
    assert_eq!(out.stdout.trim(), "paused colony c");
    assert_eq!(
        env.run(&["stats", "--json"]).await.ok().json()["stats"]["paused"],
        true
    );
    let executor = HttpExecutor::new(&env.coordinator, &token);
    assert!(
        executor.assign("c", 0, 1).await.is_empty(),
        "paused: nothing assigned"
    );
    env.run(&["resume", "--json"]).await.ok();
    assert_eq!(
        env.run(&["stats", "--json"]).await.ok().json()["stats"]["paused"],
        false
    );
    let taken = executor.assign("c", 5, 1).await;
    assert_eq!(taken[0]["id"], id);
    env.run(&["--colony", "nope", "pause"]).await.code(2);
}
