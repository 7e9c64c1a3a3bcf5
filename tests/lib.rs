//! Test harness: the shared kit (crate `testkit`: a fresh database with the extension per
//! test, connections, a notification listener, coordinator processes, HTTP executors, polling
//! with a deadline), re-exported so tests say `use e2e::...`, plus what only the tests use: a
//! fingerprint of the extension's tables, SQLSTATEs of failed calls, and specs.
//!
//! The cluster comes from the environment (`PGHOST`, `PGPORT`, `PGUSER`); `.ci/run` and
//! `scripts/test` start a throwaway one and set them. A test never shares a database with
//! another, so tests run in parallel.

use tokio_postgres::Client;

pub use testkit::{
    Coordinator, DEADLINE, HttpExecutor, Listener, PrivateCluster, TestDb, cluster_config,
    connect_with, eventually, metrics_text, within,
};

/// A digest of everything in the extension's tables, to show a failed call changed nothing.
pub async fn fingerprint(client: &Client) -> String {
    client
        .query_one(
            "SELECT md5(coalesce((SELECT string_agg(c::text, '|' ORDER BY c.name) FROM colony_assign.colonies c), '')
                     || coalesce((SELECT string_agg(e::text, '|' ORDER BY e.colony, e.name) FROM colony_assign.executors e), '')
                     || coalesce((SELECT string_agg(p::text, '|' ORDER BY p.id) FROM colony_assign.processes p), ''))",
            &[],
        )
        .await
        .expect("fingerprint")
        .get(0)
}

/// The SQLSTATE of a failed call, panicking when it did not fail.
pub fn sqlstate<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>) -> String {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("expected a database error, got {e}"))
            .code()
            .to_owned(),
    }
}

/// A minimal valid spec for `executor_type`, with extra top-level or condition fields merged in.
pub fn spec(
    executor_type: &str,
    conditions: serde_json::Value,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut spec =
        serde_json::json!({"funcname": "work", "conditions": {"executortype": executor_type}});
    if let serde_json::Value::Object(c) = conditions {
        for (k, v) in c {
            spec["conditions"][k] = v;
        }
    }
    if let serde_json::Value::Object(e) = extra {
        for (k, v) in e {
            spec[k] = v;
        }
    }
    spec
}
