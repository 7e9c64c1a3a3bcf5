//! Per-session scan cursors for assign().
//!
//! A claim leaves a dead entry at the head of its queue range in the partial index; vacuum
//! removes it only once no snapshot can still see the claimed row. While some long transaction
//! holds an old snapshot, nothing can be removed and every assign that scans from the head walks
//! every claim made since (measured: throughput fell to 0.29 of normal in 60 s). So each session
//! remembers, per queue range (colony, type, location or none), the position of the last row it
//! claimed, and scans from there: it walks only what other sessions claimed since.
//!
//! The cursor only moves where a scan *starts*; exactness of claims is still SKIP LOCKED plus
//! the state checks. Rows can become waiting behind a cursor (a requeue, a higher-priority
//! submit, a claim that rolled back, a row skipped while another session held it), so a cursor
//! is dropped, and the next scan starts at the head again, when: the ranged scan found fewer
//! rows than it asked for (assign() then completes the call from the head); it is older than
//! `colony_assign.scan_cursor_ttl`; the transaction aborts. Strict mode never uses cursors. In
//! distributed mode a process that becomes waiting behind a session's cursor, while that session
//! still finds work after it, waits for the cursor to expire: up to the TTL (1 s by default).
//! Measured: throughput during a long transaction 0.89 of normal with cursors, 0.24 without
//! (docs/BENCHMARKS.md, soak).

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a session scans from its cursor before it scans from the head again; 0 = never
/// use cursors (every scan from the head).
static TTL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

pub fn init() {
    GucRegistry::define_int_guc(
        c"colony_assign.scan_cursor_ttl",
        c"How long assign() scans a queue from where this session last claimed before it starts at the head again; 0 = always from the head.",
        c"Bounds how long a process that becomes waiting behind a session's scan position (a requeue, a higher-priority submit) can be passed over in distributed mode.",
        &TTL_MS,
        0,
        60_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
}

fn ttl() -> Duration {
    Duration::from_millis(TTL_MS.get().max(0) as u64)
}

/// Before every position: -priority is at least -50000.
const HEAD: [i64; 2] = [-50001, 0];

struct Cursor {
    /// ((-priority), id) of the last row claimed.
    position: [i64; 2],
    since: Instant,
}

type Range = (String, String, Option<String>);

thread_local! {
    static CURSORS: RefCell<HashMap<Range, Cursor>> = RefCell::new(HashMap::new());
    /// Whether a scan since the last `_cursor_used()` started from a cursor rather than the head.
    static USED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn range(colony: &str, executor_type: &str, location: Option<&str>) -> Range {
    (
        colony.to_owned(),
        executor_type.to_owned(),
        location.map(str::to_owned),
    )
}

/// Where this session's next scan of the range starts: `[-priority, id]`, exclusive.
#[pg_extern(volatile, parallel_unsafe)]
fn _cursor_start(colony: &str, executor_type: &str, location: Option<&str>) -> Vec<i64> {
    let key = range(colony, executor_type, location);
    CURSORS.with_borrow_mut(|cursors| match cursors.get(&key) {
        Some(c) if c.since.elapsed() < ttl() => {
            USED.set(true);
            c.position.to_vec()
        }
        Some(_) => {
            cursors.remove(&key);
            HEAD.to_vec()
        }
        None => HEAD.to_vec(),
    })
}

/// After a claim: `last` is the position of the last row claimed from the range (NULL if
/// none), `exhausted` whether the scan found fewer rows than it asked for. Returns 0 (so SQL
/// can sum calls).
#[pg_extern(volatile, parallel_unsafe)]
fn _cursor_advance(
    colony: &str,
    executor_type: &str,
    location: Option<&str>,
    last: Option<Vec<i64>>,
    exhausted: bool,
) -> i32 {
    let key = range(colony, executor_type, location);
    CURSORS.with_borrow_mut(|cursors| {
        if exhausted {
            cursors.remove(&key);
        } else if let Some([priority, id]) =
            last.as_deref().and_then(|l| <[i64; 2]>::try_from(l).ok())
        {
            cursors
                .entry(key)
                .and_modify(|c| c.position = [priority, id])
                .or_insert(Cursor {
                    position: [priority, id],
                    since: Instant::now(),
                });
        }
    });
    0
}

/// Whether the scans since the last call started from a cursor (and resets that). assign()
/// asks after an empty attempt: work may be waiting behind the cursor, which the short result
/// has just dropped, so it tries once more from the head rather than answer "nothing".
#[pg_extern(volatile, parallel_unsafe)]
fn _cursor_used() -> bool {
    USED.replace(false)
}

/// The transaction aborted: claims it made are waiting again, behind cursors it moved.
pub fn clear() {
    CURSORS.with_borrow_mut(HashMap::clear);
    USED.set(false);
}
