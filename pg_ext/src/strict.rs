//! Strict mode: claims per (colony, executor type) are serialized inside the database, so
//! processes start in exact priority order.
//!
//! A claimer takes a transaction-level lock on (colony, type) before it reads the queue, and
//! gives it back as soon as its transaction has done all its work (the PRE_COMMIT event), not
//! after the commit's WAL flush. The next claimer's fresh snapshot may still see the previous
//! claims as waiting, but those rows are row-locked by the committing transaction, so it skips
//! them (SKIP LOCKED) and takes the next in order. That is exact for every committed outcome:
//! after PRE_COMMIT a transaction can no longer roll back on its own (the one exception,
//! serializable isolation's final check, keeps the lock to the end), and the next claimer's
//! commit record follows the previous one's in the WAL, so a crash cannot keep the later claim
//! and lose the earlier. Holding the lock only for the claim itself, not the flush, is what
//! lets strict mode commit in groups: throughput is bounded by the claim's CPU time instead of
//! one claim per WAL flush.

use pgrx::pg_sys;
use std::cell::RefCell;

/// colony_assign's advisory lock class ('CALA'): keeps these locks apart from an
/// application's own advisory locks on one bigint.
const LOCK_CLASS: u32 = 1_131_376_449;

thread_local! {
    /// Locks this transaction holds, released at PRE_COMMIT.
    static HELD: RefCell<Vec<pg_sys::LOCKTAG>> = const { RefCell::new(Vec::new()) };
}

fn tag(colony: &str, executor_type: &str) -> pg_sys::LOCKTAG {
    // FNV-1a over the length-prefixed names: the same key in every backend. A collision
    // between two (colony, type) pairs only serializes them together, never breaks order.
    let mut hash: u32 = 0x811c9dc5;
    for field in [colony.as_bytes(), executor_type.as_bytes()] {
        for b in (field.len() as u32).to_le_bytes().iter().chain(field) {
            hash = (hash ^ u32::from(*b)).wrapping_mul(0x01000193);
        }
    }
    pg_sys::LOCKTAG {
        // SAFETY: a plain read of the backend's database id.
        locktag_field1: u32::from(unsafe { pg_sys::MyDatabaseId }),
        locktag_field2: LOCK_CLASS,
        locktag_field3: hash,
        locktag_field4: 2,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

/// Waits for, and takes, the strict-mode lock of (colony, executor type).
pub fn lock(colony: &str, executor_type: &str) {
    let tag = tag(colony, executor_type);
    // SAFETY: a transaction-level advisory lock (released by PostgreSQL on abort); waiting
    // is interruptible like any lock wait.
    unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as i32, false, false) };
    HELD.with_borrow_mut(|held| held.push(tag));
}

/// `_strict_lock(colony, executor_type)`: takes the lock from SQL (owner only), so a test can
/// hold it while claimers queue behind it.
#[pgrx::pg_extern(volatile, parallel_unsafe)]
fn _strict_lock(colony: &str, executor_type: &str) -> bool {
    lock(colony, executor_type);
    true
}

/// PRE_COMMIT: everything the transaction does is done; let the next claimer in.
pub fn at_pre_commit() {
    if crate::table::serializable() {
        return; // its commit can still fail the serialization check: keep order to the end
    }
    for tag in HELD.with_borrow_mut(std::mem::take) {
        // SAFETY: a lock this transaction took in lock().
        unsafe { pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as i32, false) };
    }
}

/// The transaction ended another way (PostgreSQL released the locks itself).
pub fn forget() {
    HELD.with_borrow_mut(Vec::clear);
}
