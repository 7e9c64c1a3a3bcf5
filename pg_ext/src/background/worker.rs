//! The per-database worker: relays the notifications committed transactions hand over
//! (relay.rs) as soon as its latch is set, calls `colony_assign.reap()` every
//! `colony_assign.reap_interval` — at once again while a pass reports more to do — and
//! releases processes whose preferred-location wait is over at the moment it ends.
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
        Spi::get_one::<String>(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'colony_assign'",
        )
    });
    let version = match installed {
        Ok(Some(version)) => version,
        _ => return, // no extension here; the launcher looks again later
    };
    if version != env!("CARGO_PKG_VERSION") {
        // The library was upgraded but this database's SQL objects were not yet: the worker
        // would call functions that are not there. It waits for the update instead.
        log!(
            "colony_assign worker: database has colony_assign {version}, the library is {}; run ALTER EXTENSION colony_assign UPDATE",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    if REAP_INTERVAL_MS.get() <= 0 {
        return; // reaping switched off here; committing sessions NOTIFY themselves
    }
    // Registered until this process exits, however it exits (relay.rs).
    let relaying = crate::relay::register();
    let mut next_reap = Instant::now();
    // When the next preferred-location wait ends: the worker releases those processes at that
    // moment (local-first placement), not at its next reap pass.
    let mut next_release: Option<Instant> = None;
    loop {
        if relaying {
            relay_pending();
        }
        let interval = Duration::from_millis(REAP_INTERVAL_MS.get().max(1) as u64);
        let now = Instant::now();
        if now >= next_reap {
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
            next_release = release_due();
        } else if next_release.is_some_and(|at| now >= at) || crate::relay::take_locality() {
            next_release = release_due();
        }
        let wake_at = next_release.map_or(next_reap, |at| at.min(next_reap));
        let wait = wake_at.saturating_duration_since(Instant::now());
        // A SIGTERM ends the process inside the wait (PostgreSQL's die()).
        if !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
        reload_configuration_if_asked();
    }
}

/// Releases the processes whose preferred-location wait is over, and returns when the next
/// one ends (None: none waits).
fn release_due() -> Option<Instant> {
    let next = BackgroundWorker::transaction(|| {
        Spi::run("SELECT colony_assign._release_local()")?;
        Spi::get_one::<f64>(
            "SELECT extract(epoch FROM colony_assign._next_release() - clock_timestamp())::float8",
        )
    });
    match next {
        Ok(Some(seconds)) => Some(Instant::now() + Duration::from_secs_f64(seconds.max(0.0))),
        Ok(None) => None,
        Err(e) => {
            warning!("colony_assign worker: releasing preferred-location waits failed: {e}");
            None
        }
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
