//! The extension over real connections: concurrency, NOTIFY delivery, deadlines, bad input and
//! privileges — what `#[pg_test]` (one session, rolled back) cannot show.

mod adversarial;
mod assign;
mod bad_input;
mod idempotency;
mod lease;
mod lifecycle;
mod notify;
mod placement;
mod reap;
mod recovery;
mod security;
mod worker;
mod workflows;

use e2e::TestDb;
use serde_json::Value;
use tokio_postgres::Client;

/// A test database with colony "c".
async fn setup(test: &str) -> (TestDb, Client) {
    let db = TestDb::new(test).await;
    let client = db.client().await;
    client
        .execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    (db, client)
}

async fn add_executor(
    client: &Client,
    name: &str,
    executor_type: &str,
    location: Option<&str>,
) -> String {
    client
        .query_one(
            "SELECT colony_assign.add_executor('c', $1, $2, $3)",
            &[&name, &executor_type, &location],
        )
        .await
        .unwrap()
        .get(0)
}

async fn submit(client: &Client, spec: &Value) -> i64 {
    client
        .query_one("SELECT colony_assign.submit('c', $1)", &[spec])
        .await
        .unwrap()
        .get(0)
}

async fn submit_many(client: &Client, specs: &[Value]) -> Vec<i64> {
    let specs = Value::Array(specs.to_vec());
    client
        .query(
            "SELECT * FROM colony_assign.submit_many('c', $1)",
            &[&specs],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Process ids assigned by one assign() call, in the order returned.
async fn assign(client: &Client, executor: &str, max: i32) -> Vec<i64> {
    client
        .query(
            "SELECT id FROM colony_assign.assign('c', $1, $2)",
            &[&executor, &max],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn waiting(client: &Client) -> i64 {
    client
        .query_one("SELECT waiting FROM colony_assign.stats('c')", &[])
        .await
        .unwrap()
        .get(0)
}
