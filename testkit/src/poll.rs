//! Waiting for conditions that are observed, not signalled (a metric reaching a value, a row
//! reaching a state): poll with a deadline, never sleep a guessed time.

use crate::DEADLINE;
use std::future::Future;
use std::time::Duration;

/// How often a condition is checked again.
const INTERVAL: Duration = Duration::from_millis(10);

/// Polls `condition` until it holds or `limit` has passed; whether it held.
pub async fn within<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Polls `condition` until it holds, panicking with `what` at the [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        within(DEADLINE, condition).await,
        "timed out waiting for: {what}"
    );
}
