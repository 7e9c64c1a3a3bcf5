//! Transaction events: PostgreSQL's transaction and subtransaction callbacks are received here
//! once and handed to the modules that keep per-transaction state:
//! - `notify`: coalesced notification counts (sent, handed to the relay, or dropped);
//! - `strict`: strict-mode locks, given back as soon as the transaction's work is done;
//! - `cursor`: queue-range epochs bumped after commit or rollback, and the session's cursors
//!   dropped when its own claims roll back (also to a savepoint);
//! - `identity`: the cached "is this role trusted" answer, asked again each transaction.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// Registers the callbacks; called once per backend from `_PG_init`.
pub fn init() {
    // SAFETY: plain registration of static functions with no argument pointer.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        // Still inside the transaction; nothing after this can make it roll back on its own.
        XACT_EVENT_PRE_COMMIT => {
            crate::notify::at_pre_commit();
            crate::strict::at_pre_commit();
        }
        // PREPARE TRANSACTION with pending notifications is refused by PostgreSQL itself,
        // which is the right answer; locks pass to the prepared transaction.
        XACT_EVENT_PRE_PREPARE => crate::notify::at_pre_prepare(),
        XACT_EVENT_PREPARE => {
            crate::strict::forget();
            crate::cursor::at_commit();
        }
        // Committed and visible to new snapshots. Nothing here may raise an error.
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => {
            crate::notify::at_commit();
            crate::relay::at_commit();
            crate::cursor::at_commit();
            crate::strict::forget();
            crate::identity::at_transaction_end();
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            crate::notify::at_abort();
            crate::relay::at_abort();
            crate::cursor::at_abort();
            crate::strict::forget();
            crate::identity::at_transaction_end();
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    // During these events the current nesting level is still the subtransaction's own.
    // SAFETY: a plain read of the transaction state.
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    match event {
        SUBXACT_EVENT_ABORT_SUB => {
            crate::notify::at_subabort(level);
            crate::cursor::at_subabort(level);
        }
        SUBXACT_EVENT_COMMIT_SUB => {
            crate::notify::at_subcommit(level);
            crate::cursor::at_subcommit(level);
        }
        _ => {}
    }
}
