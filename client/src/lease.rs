//! Claim leases (docs/RELIABILITY.md, defect 2): a process a coordinator claims for this
//! executor carries `lease_until`; unless the executor acknowledges it by then — close, fail,
//! log or heartbeat — the database gives it back to WAITING (the answer may never have reached
//! the executor). [`Client`](crate::Client) keeps the processes it received and has not yet
//! closed, failed or logged; half a lease after receiving some, if any of them is still held,
//! it sends one heartbeat, which acknowledges every lease of the executor at once.

use serde_json::Value;
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

    /// Whether any of `ids` is still held; forgets them all (one heartbeat acknowledges all).
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
pub fn length(started_at: Option<&str>, lease_until: Option<&Value>) -> Option<Duration> {
    let until = lease_until?.as_str()?;
    let micros = match (started_at.and_then(micros), micros(until)) {
        (Some(start), Some(until)) if until > start => until - start,
        _ => return Some(FALLBACK),
    };
    Some(Duration::from_micros(micros as u64))
}

/// An RFC 3339 timestamp as PostgreSQL writes it in JSON (`2026-11-30T16:22:34.123456+00:00`)
/// in microseconds since 1970.
fn micros(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = ts.get(from..from + len)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let (y, m, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hh, mm, ss) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut i = 19;
    let mut frac = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut digits = 0;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if digits < 6 {
                frac = frac * 10 + i64::from(c - b'0');
                digits += 1;
            }
            i += 1;
        }
        frac *= 10i64.pow(6 - digits);
    }
    let offset = match b.get(i) {
        Some(b'Z') => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let h = num(i + 1, 2)?;
            let m = if b.get(i + 3) == Some(&b':') {
                num(i + 4, 2)?
            } else {
                num(i + 3, 2).unwrap_or(0)
            };
            let s = (h * 60 + m) * 60;
            if sign == b'+' { s } else { -s }
        }
        _ => return None,
    };
    // Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hh * 3600 + mm * 60 + ss - offset;
    Some(seconds * 1_000_000 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_lease_from_the_claims_timestamps() {
        assert_eq!(micros("1970-01-01T00:00:00+00:00"), Some(0));
        assert_eq!(micros("1970-01-02T01:00:00.5+01:00"), Some(86_400_500_000));
        assert_eq!(
            length(
                Some("2026-11-30T23:59:55.250000+00:00"),
                Some(&json!("2026-12-01T00:00:10.250000+00:00"))
            ),
            Some(Duration::from_secs(15))
        );
        assert_eq!(length(Some("2026-11-30T23:59:55+00:00"), None), None);
        assert_eq!(
            length(Some("2026-11-30T23:59:55+00:00"), Some(&Value::Null)),
            None
        );
        assert_eq!(length(None, Some(&json!("infinity"))), Some(FALLBACK));
    }

    #[test]
    fn one_heartbeat_acknowledges_everything_held() {
        let held = Held::default();
        held.add([1, 2, 3]);
        held.remove(2);
        assert!(held.take_any(&[2, 3]));
        assert!(!held.take_any(&[2, 3]));
        assert!(held.take_any(&[1]));
    }
}
