//! Claim leases (docs/RELIABILITY.md, defect 2): a process a coordinator claims for this
//! executor carries `lease_until`; unless the executor acknowledges it by then — close, fail,
//! log or heartbeat — the database gives it back to WAITING (the answer may never have reached
//! the executor). [`Client`](crate::Client) keeps the processes it received and has not yet
//! closed, failed or logged; half a lease after receiving some, if any of them is still held,
//! it sends one heartbeat naming every process it holds, which acknowledges exactly those (a
//! heartbeat without ids only keeps the executor alive).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

/// When a lease's length cannot be read from a process (a coordinator or database that sends
/// timestamps this parser does not know): heartbeat this soon instead.
pub const FALLBACK: Duration = Duration::from_secs(5);

/// Processes received with a lease and not yet acknowledged by this client.
#[derive(Default)]
pub struct Held(Mutex<HashSet<i64>>);

impl Held {
    pub fn add(&self, ids: impl IntoIterator<Item = i64>) {
        self.lock().extend(ids);
    }

    /// Forgets `id` (acknowledged, or no longer this executor's).
    pub fn remove(&self, id: i64) {
        self.lock().remove(&id);
    }

    /// The processes held, in id order (what a heartbeat names).
    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.lock().iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Whether any of `ids` is still held.
    pub fn any(&self, ids: &[i64]) -> bool {
        let held = self.lock();
        ids.iter().any(|id| held.contains(id))
    }

    /// Whether any of `ids` is still held; forgets them all (a heartbeat that named them
    /// acknowledged them).
    pub fn take_any(&self, ids: &[i64]) -> bool {
        let mut held = self.lock();
        let before = held.len();
        for id in ids {
            held.remove(id);
        }
        held.len() < before
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The lease a process was claimed with (`lease_until - started_at`, both the database's
/// clock): None without a lease, [`FALLBACK`] when the timestamps cannot be read.
pub fn length(started_at: Option<&str>, lease_until: Option<&str>) -> Option<Duration> {
    let until = lease_until?;
    match (started_at.and_then(micros), micros(until)) {
        (Some(start), Some(until)) if until > start => {
            Some(Duration::from_micros((until - start) as u64))
        }
        _ => Some(FALLBACK),
    }
}

/// An RFC 3339 timestamp (as PostgreSQL writes it in JSON: `2026-11-30T16:22:34.123456+00:00`)
/// in microseconds since 1970.
fn micros(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lease_from_the_claims_timestamps() {
        assert_eq!(micros("1970-01-01T00:00:00+00:00"), Some(0));
        assert_eq!(micros("1970-01-02T01:00:00.5+01:00"), Some(86_400_500_000));
        assert_eq!(
            length(
                Some("2026-11-30T23:59:55.250000+00:00"),
                Some("2026-12-01T00:00:10.250000+00:00")
            ),
            Some(Duration::from_secs(15))
        );
        assert_eq!(length(Some("2026-11-30T23:59:55+00:00"), None), None);
        // A process whose lease_until is JSON null has none.
        let null: Option<String> = serde_json::from_value(serde_json::Value::Null).unwrap();
        assert_eq!(
            length(Some("2026-11-30T23:59:55+00:00"), null.as_deref()),
            None
        );
        assert_eq!(length(None, Some("infinity")), Some(FALLBACK));
        assert_eq!(
            length(Some("2026-11-30T23:59:55Z"), Some("2026-11-30T23:59:56.5Z")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(micros("2026-11-30 23:59:55"), None);
    }

    #[test]
    fn a_heartbeat_acknowledges_exactly_what_it_named() {
        let held = Held::default();
        held.add([3, 1, 2]);
        held.remove(2);
        assert_eq!(held.ids(), [1, 3]);
        assert!(held.any(&[2, 3]) && !held.any(&[2, 4]));
        assert!(held.take_any(&[2, 3]));
        assert_eq!(held.ids(), [1]);
        assert!(!held.take_any(&[2, 3]));
        assert!(held.take_any(&[1]));
    }
}
