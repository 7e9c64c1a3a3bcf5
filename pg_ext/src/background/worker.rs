//! The per-database worker: relays the notifications committed transactions hand over
//! (relay.rs) as soon as its latch is set, and calls `colony_assign.reap()` every
//! `colony_assign.reap_interval` — at once again while a pass reports more to do.
//!
//! It exits at once (the launcher looks again later) when the database has no colony_assign
//! extension or `reap_interval` is 0 for it. An ERROR in a pass ends it like any backend; its
//! relay registration ends with it (relay.rs), committing sessions then NOTIFY themselves, and
//! the launcher starts a new worker on its next round.
//!
//! `reap()` is compare-and-set, so the reaper may run next to coordinators that reap too. Note
//! for operators: a worker keeps a connection to its database, so `DROP DATABASE` needs
//! `WITH (FORCE)` (or `ALTER DATABASE ... SET colony_assign.reap_interval = 0` first and a
//! `pg_terminate_backend` of the worker).

use super::{REAP_INTERVAL_MS, attach_signal_handlers, reload_configuration_if_asked};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::time::{Duration, Instant};

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn colony_assign_worker_main(arg: pg_sys::Datum) {
    attach_signal_handlers();
    // SAFETY: the launcher passed the database oid as this worker's argument.
    let Some(oid) = (unsafe { pg_sys::Oid::from_datum(arg, false) }) else {
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(oid), None);
    let installed = BackgroundWorker::transaction(|| {
        Spi::get_one::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'colony_assign')",
        )
    });
    if installed != Ok(Some(true)) || REAP_INTERVAL_MS.get() <= 0 {
        return; // nothing to do here; the launcher looks again later
    }
    // Registered until this process exits, however it exits (relay.rs).
    let relaying = crate::relay::register();
    let mut next_reap = Instant::now();
    loop {
        if relaying {
            relay_pending();
        }
        let interval = Duration::from_millis(REAP_INTERVAL_MS.get().max(1) as u64);
        if Instant::now() >= next_reap {
            let more = BackgroundWorker::transaction(|| {
                Spi::get_one::<bool>("SELECT more FROM colony_assign.reap()")
            })
            .unwrap_or_else(|e| {
                warning!("colony_assign worker: {e}");
                None
            })
            .unwrap_or(false);
            next_reap = if more {
                Instant::now()
            } else {
                Instant::now() + interval
            };
        }
        let wait = next_reap.saturating_duration_since(Instant::now());
        // A SIGTERM ends the process inside the wait (PostgreSQL's die()).
        if !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
        reload_configuration_if_asked();
    }
}

/// Sends what committed transactions handed over, in one transaction of the worker's own.
/// Its commit need not wait for the WAL flush: a notification is a hint, and listeners see it
/// as soon as the commit is visible.
fn relay_pending() {
    let (counts, overflow) = crate::relay::take();
    if counts.is_empty() && !overflow {
        return;
    }
    let sent = BackgroundWorker::transaction(|| -> Result<(), pgrx::spi::Error> {
        Spi::run("SET LOCAL synchronous_commit = off")?;
        for (channel, n) in &counts {
            crate::notify::notify_now(channel, &colony_proto::wake_payload(*n));
        }
        if overflow {
            crate::notify::notify_now(colony_proto::CATCHUP_CHANNEL, "");
        }
        Ok(())
    });
    if let Err(e) = sent {
        warning!("colony_assign worker: relaying notifications failed: {e}");
    }
}
