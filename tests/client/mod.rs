//! The client crate (`colony-client`) and the Python example executor against real coordinator
//! processes.

mod api;
mod failover;
mod python;

use colony_client::Url;
use e2e::{Coordinator, TestDb};
use tokio_postgres::Client;

/// A test database with colony "c" and `replicas` coordinators.
async fn setup(test: &str, replicas: usize) -> (TestDb, Client, Vec<Coordinator>) {
    let db = TestDb::new(test).await;
    let sql = db.client().await;
    sql.execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    let mut coordinators = Vec::new();
    for i in 0..replicas {
        coordinators.push(Coordinator::start(&db, &format!("{test}-r{i}"), &[]).await);
    }
    (db, sql, coordinators)
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
    coordinators
        .iter()
        .map(|c| Url::parse(&c.base).unwrap())
        .collect()
}

async fn count(sql: &Client, query: &str) -> i64 {
    sql.query_one(query, &[]).await.unwrap().get(0)
}
