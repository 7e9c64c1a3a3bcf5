//! Real coordinator processes over real HTTP against the real extension.

mod admin;
mod faults;
mod http_errors;
mod invalidation;
mod lease;
mod lifecycle;
mod limits;
mod longpoll;
mod openapi;
mod partition;
mod replicas;
mod routing;
mod shutdown;
mod ui;

use e2e::{Coordinator, TestDb};
use tokio_postgres::Client;

/// A test database with colony "c" and `replicas` coordinators.
async fn setup(test: &str, replicas: usize, args: &[&str]) -> (TestDb, Client, Vec<Coordinator>) {
    let db = TestDb::new(test).await;
    let client = db.client().await;
    client
        .execute("SELECT colony_assign.add_colony('c')", &[])
        .await
        .unwrap();
    let mut coordinators = Vec::new();
    for i in 0..replicas {
        coordinators.push(Coordinator::start(&db, &format!("{test}-r{i}"), args).await);
    }
    (db, client, coordinators)
}

async fn add_executor(
    client: &Client,
    colony: &str,
    name: &str,
    executor_type: &str,
    location: Option<&str>,
) -> String {
    client
        .query_one(
            "SELECT colony_assign.add_executor($1, $2, $3, $4)",
            &[&colony, &name, &executor_type, &location],
        )
        .await
        .unwrap()
        .get(0)
}

/// Sum of a metric over all replicas.
async fn total(coordinators: &[Coordinator], name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for c in coordinators {
        sum += c.metric(name, labels).await;
    }
    sum
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}
