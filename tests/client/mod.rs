//! The client crate (`colony-client`) and the Python example executor against real coordinator
//! processes.
//!
//! Every failure the client handles is produced here with real parts: a killed coordinator or
//! a closed port (refused connections), a coordinator whose database is down or refuses new
//! sessions (503, a degraded `/healthz`), a coordinator frozen with SIGSTOP (the kernel accepts
//! the connection, nothing answers), a coordinator killed while its request waits for a lock
//! in PostgreSQL (the request is applied, its answer is lost), and a frozen coordinator whose
//! listen queue is full (it stops accepting connections).

mod api;
mod failover;
mod faults;
mod lease;
mod lost;
mod python;

use colony_client::Url;
use e2e::{Coordinator, TestDb, eventually};
use tokio_postgres::Client;

/// A test database with colony "c" and `replicas` coordinators.
async fn setup(test: &str, replicas: usize) -> (TestDb, Client, Vec<Coordinator>) {
    setup_with(test, &vec![&[][..]; replicas]).await
}

/// A test database with colony "c" and one coordinator per entry of `args` (its extra
/// arguments), named `<test>-r<i>`.
async fn setup_with(test: &str, args: &[&[&str]]) -> (TestDb, Client, Vec<Coordinator>) {
    let db = TestDb::new(test).await;
    let sql = db.client().await;
    sql.execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    let mut coordinators = Vec::new();
    for (i, args) in args.iter().enumerate() {
        coordinators.push(Coordinator::start(&db, &replica_name(test, i), args).await);
    }
    (db, sql, coordinators)
}

/// The replica name `setup` gives coordinator `i` of `test`.
fn replica_name(test: &str, i: usize) -> String {
    format!("{test}-r{i}")
}

/// Registers an executor in colony "c"; its token.
async fn add_executor(sql: &Client, name: &str, executor_type: &str) -> String {
    sql.query_one(
        "SELECT colony_assign.add_executor('c', $1, $2)",
        &[&name, &executor_type],
    )
    .await
    .unwrap()
    .get(0)
}

fn urls(coordinators: &[Coordinator]) -> Vec<Url> {
    coordinators.iter().map(url).collect()
}

fn url(coordinator: &Coordinator) -> Url {
    Url::parse(&coordinator.base).unwrap()
}

async fn count(sql: &Client, query: &str) -> i64 {
    sql.query_one(query, &[]).await.unwrap().get(0)
}

/// `host:port` of a coordinator.
fn address(coordinator: &Coordinator) -> String {
    coordinator.base.trim_start_matches("http://").to_owned()
}

fn pid(coordinator: &Coordinator) -> u32 {
    coordinator.pid().expect("the coordinator is running")
}

/// Sends `signal` (a name such as `STOP`) to the coordinator process.
fn signal(coordinator: &Coordinator, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid(coordinator).to_string())
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -{signal} failed");
}

/// SIGSTOP, returning once the process is stopped. A frozen coordinator's kernel still accepts
/// TCP connections into the listen queue (until it is full), but nothing reads or answers them.
async fn freeze(coordinator: &Coordinator) {
    signal(coordinator, "STOP");
    let stat = format!("/proc/{}/stat", pid(coordinator));
    eventually("the coordinator is stopped", || {
        let stat = stat.clone();
        async move {
            // "pid (comm) S ...": the state follows the last ')'.
            std::fs::read_to_string(&stat).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('T'))
            })
        }
    })
    .await;
}

/// SIGKILL (the harness kills on drop), returning once its port refuses connections: its
/// connections are reset, and nothing it was doing is answered.
async fn kill(coordinator: Coordinator) {
    let address = address(&coordinator);
    drop(coordinator);
    eventually("the killed replica refuses connections", || {
        let address = address.clone();
        async move {
            matches!(tokio::net::TcpStream::connect(&address).await,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
        }
    })
    .await;
}

/// Database sessions of coordinator `replica` running a statement that contains `call`,
/// and how many of them wait for a lock.
async fn sessions(sql: &Client, replica: &str, call: &str) -> (i64, i64) {
    let row = sql
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'active'),
                    count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock')
               FROM pg_stat_activity
              WHERE application_name = 'colony-coordinator ' || $1 AND query LIKE '%' || $2 || '%'",
            &[&replica, &call],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Waits until a database session of coordinator `replica` running `call` waits for a lock.
async fn wait_blocked(sql: &Client, replica: &str, call: &str) {
    eventually(&format!("{replica}'s {call} waits for a lock"), || async {
        sessions(sql, replica, call).await.1 > 0
    })
    .await;
}

/// Waits until no database session of coordinator `replica` runs `call` any more (a killed
/// coordinator's session finishes its statement, commits, and then finds its client gone).
async fn wait_finished(sql: &Client, replica: &str, call: &str) {
    eventually(&format!("{replica}'s {call} has finished"), || async {
        sessions(sql, replica, call).await.0 == 0
    })
    .await;
}
