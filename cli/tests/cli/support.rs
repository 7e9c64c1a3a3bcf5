//! A test's system (database, coordinator, admin token, colony `c`) and running the binary.

use serde_json::Value;
use std::process::Stdio;
use testkit::{Coordinator, DEADLINE, TestDb};
use tokio::io::AsyncWriteExt;

/// The binary under test.
pub const COLONY: &str = env!("CARGO_BIN_EXE_colony");

pub struct Env {
    /// Kept for the test's lifetime: the database the coordinator serves.
    pub _db: TestDb,
    pub sql: tokio_postgres::Client,
    pub coordinator: Coordinator,
    /// An admin token that reaches every colony.
    pub admin: String,
}

impl Env {
    /// Database `t_cli_<test>` with an admin token and colony `c`, and one coordinator.
    pub async fn new(test: &str) -> Env {
        let db = TestDb::new(&format!("cli_{test}")).await;
        let sql = db.client().await;
        let admin: String = sql
            .query_one("SELECT colony_assign.add_admin('ops')", &[])
            .await
            .unwrap()
            .get(0);
        sql.execute("SELECT colony_assign.add_colony('c')", &[])
            .await
            .unwrap();
        let coordinator = Coordinator::start(&db, &format!("cli-{test}"), &[]).await;
        Env {
            _db: db,
            sql,
            coordinator,
            admin,
        }
    }

    /// `colony` with the coordinator's URL, the admin token and colony `c` in its
    /// environment, and nothing else of ours.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(COLONY);
        command
            .args(args)
            .env("COLONY_URLS", &self.coordinator.base)
            .env("COLONY_ADMIN_TOKEN", &self.admin)
            .env("COLONY_COLONY", "c")
            .env_remove("COLONY_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        finish(self.command(args)).await
    }

    pub async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Out {
        let mut command = self.command(args);
        command.stdin(Stdio::piped());
        let mut child = command.spawn().expect("start colony");
        let mut pipe = child.stdin.take().unwrap();
        let input = stdin.to_owned();
        let writer = tokio::spawn(async move {
            pipe.write_all(input.as_bytes()).await.unwrap();
        });
        let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
            .await
            .expect("colony finished in time")
            .unwrap();
        writer.await.unwrap();
        Out::from(output)
    }

    /// An executor of colony `c`, registered through the CLI; its token.
    pub async fn executor(&self, name: &str, executor_type: &str) -> String {
        let out = self
            .run(&["executors", "add", name, "--type", executor_type])
            .await
            .ok();
        out.stdout.trim().to_owned()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.sql.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// The state of process `id`.
    pub async fn state(&self, id: i64) -> i32 {
        self.sql
            .query_one(
                "SELECT state FROM colony_assign.processes WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0)
    }
}

async fn finish(mut command: tokio::process::Command) -> Out {
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("colony finished in time")
        .expect("run colony");
    Out::from(output)
}

/// What a run of the binary left.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Out {
    fn from(output: std::process::Output) -> Out {
        Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Out {
    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "colony failed: {self:#?}");
        self
    }

    /// Asserts exit code `code`.
    #[track_caller]
    pub fn code(self, code: i32) -> Out {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// Stdout's lines as process ids.
    #[track_caller]
    pub fn ids(&self) -> Vec<i64> {
        self.stdout
            .lines()
            .map(|l| {
                l.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("not an id: {l}"))
            })
            .collect()
    }
}

/// A minimal spec for executor type `t`.
pub fn spec(executor_type: &str, funcname: &str) -> String {
    format!(r#"{{"funcname": "{funcname}", "conditions": {{"executortype": "{executor_type}"}}}}"#)
}

/// A scratch directory of the test's own under the system's temp dir, empty.
pub fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("colony-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
