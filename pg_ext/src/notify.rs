//! Per-transaction NOTIFY coalescing.
//!
//! Every path that makes processes assignable calls `_wake(key, n)`. Instead of a NOTIFY per call
//! (or per row), the counts are summed per channel in backend-local memory and sent once per
//! channel just before commit, with the sum as payload. So `submit_many` of 10,000 processes over
//! 3 keys sends 3 notifications, and a transaction that rolls back sends none.
//!
//! Counts are tagged with the subtransaction nesting level that produced them: a rolled-back
//! savepoint (or a PL/pgSQL exception block) drops its counts, a released one hands them to its
//! parent.

use colony_proto::{Key, wake_payload};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;

/// (subtransaction nesting level, channel) -> processes that became assignable.
type Pending = HashMap<(i32, String), u64>;

thread_local! {
    // A backend is single-threaded; thread_local is simply "this backend's".
    static PENDING: RefCell<Pending> = RefCell::new(HashMap::new());
    // Set at pre-commit when the counts go to the relay after commit instead of NOTIFY.
    static HANDED_TO_RELAY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

unsafe extern "C-unwind" {
    // commands/async.h, which pgrx does not bind. Queues a notification in the current
    // transaction; PostgreSQL delivers it at commit and drops it on abort. It may raise an
    // ERROR, so it is only called through pg_guard_ffi_boundary (see send_pending).
    fn Async_Notify(channel: *const std::ffi::c_char, payload: *const std::ffi::c_char);
}

/// Records that `n` processes with these conditions became assignable in this transaction
/// (SQL callers: requeues, releases, workflow releases, resume). Name-targeted processes
/// (`executor_names` not NULL) wake each listed executor's key; otherwise the location key, or
/// the broadcast key for location-less processes (DESIGN.md, Notifications). SQL callers go
/// through `_wake_group`, which narrows the names to executors that could take the work. Such
/// work may be waiting behind scan cursors, so untargeted ranges get their epoch bumped at
/// commit (cursor.rs). Returns how many channels it queued a count for.
#[pg_extern(volatile, parallel_unsafe)]
fn _wake(
    colony: &str,
    executor_type: &str,
    location: Option<&str>,
    executor_names: Option<Vec<Option<String>>>,
    n: i64,
) -> i32 {
    if n <= 0 {
        return 0;
    }
    if executor_names.is_none() {
        crate::cursor::made_assignable(crate::cursor::Range::new(colony, executor_type, location));
    }
    let names: Option<Vec<&str>> = executor_names
        .as_ref()
        .map(|names| names.iter().flatten().map(String::as_str).collect());
    wake(colony, executor_type, location, names.as_deref(), n as u64)
}

/// Queues `n` for the key(s) of processes with these conditions, to be sent at commit:
/// untargeted (`names` None) → the location or broadcast key; targeted → each named
/// executor's key (possibly none: nobody who could take it is registered yet, and an executor
/// assigns before it waits anyway). Returns how many channels it queued a count for.
pub fn wake(
    colony: &str,
    executor_type: &str,
    location: Option<&str>,
    names: Option<&[&str]>,
    n: u64,
) -> i32 {
    let channels: Vec<String> = match names {
        None => vec![Key::untargeted(colony, executor_type, location).channel()],
        Some(names) => names
            .iter()
            .map(|executor| {
                Key::Name {
                    colony,
                    executor_type,
                    executor,
                }
                .channel()
            })
            .collect(),
    };
    // SAFETY: a plain read of the transaction state.
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    let queued = channels.len() as i32;
    PENDING.with_borrow_mut(|pending| {
        for channel in channels {
            *pending.entry((level, channel)).or_default() += n;
        }
    });
    queued
}

/// PRE_COMMIT: still inside the transaction. Either leave the counts for the relay (see
/// relay.rs), or queue one NOTIFY per channel, which PostgreSQL sends only if the commit
/// succeeds.
pub fn at_pre_commit() {
    if PENDING.with_borrow(|p| p.is_empty()) {
        return;
    }
    if crate::relay::available() {
        HANDED_TO_RELAY.set(true);
    } else {
        send_pending();
    }
}

pub fn at_pre_prepare() {
    send_pending();
}

/// Committed: hand the counts over. Must not raise.
pub fn at_commit() {
    if HANDED_TO_RELAY.replace(false) {
        let per_channel = coalesce(PENDING.with_borrow_mut(std::mem::take));
        crate::relay::hand_over(per_channel.iter().map(|(c, n)| (c.as_str(), *n)));
    }
}

pub fn at_abort() {
    HANDED_TO_RELAY.set(false);
    PENDING.with_borrow_mut(HashMap::clear);
}

/// A rolled-back savepoint (or PL/pgSQL exception block) drops its counts.
pub fn at_subabort(level: i32) {
    PENDING.with_borrow_mut(|pending| pending.retain(|(l, _), _| *l < level));
}

/// A released savepoint hands its counts to its parent.
pub fn at_subcommit(level: i32) {
    PENDING.with_borrow_mut(|pending| {
        if pending.is_empty() {
            return;
        }
        let inner: Vec<((i32, String), u64)> =
            pending.extract_if(|(l, _), _| *l >= level).collect();
        for ((_, channel), n) in inner {
            *pending.entry((level - 1, channel)).or_default() += n;
        }
    });
}

/// Sums the counts of all (sub)transaction levels per channel.
fn coalesce(pending: Pending) -> HashMap<String, u64> {
    let mut per_channel: HashMap<String, u64> = HashMap::with_capacity(pending.len());
    for ((_, channel), n) in pending {
        *per_channel.entry(channel).or_default() += n;
    }
    per_channel
}

fn send_pending() {
    for (channel, n) in coalesce(PENDING.with_borrow_mut(std::mem::take)) {
        notify_now(&channel, &wake_payload(n));
    }
}

/// Queues a NOTIFY in the current transaction (sent at its commit).
pub fn notify_now(channel: &str, payload: &str) {
    // Channel names are hex/ASCII from colony-proto and payloads are digits: no NULs.
    let channel = CString::new(channel).expect("channel names contain no NUL");
    let payload = CString::new(payload).expect("payloads contain no NUL");
    // SAFETY: valid C strings (Async_Notify copies them into transaction memory), called on the
    // backend's main thread, with PostgreSQL errors turned into Rust panics.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| Async_Notify(channel.as_ptr(), payload.as_ptr()))
    };
}
