//! Background workers, started when the extension is in `shared_preload_libraries`:
//!
//! - one **launcher** per cluster. It connects to `colony_assign.launcher_database` (default
//!   `postgres`), lists the databases that accept connections every 10 s, and starts a reaper
//!   for each one that has none yet;
//! - one **worker** per database. It exits at once (and is tried again by the launcher 10 s
//!   later) when the database has no colony_assign extension or `colony_assign.reap_interval`
//!   is 0 for it. Otherwise it relays notifications (relay.rs) as soon as its latch is set,
//!   and calls `colony_assign.reap()` every `reap_interval` — at once again while a pass
//!   reports more to do.
//!
//! `reap()` is compare-and-set, so the reaper may run next to coordinators that reap too.
//! Note for operators: a reaper keeps a connection to its database, so `DROP DATABASE` needs
//! `WITH (FORCE)` (or `ALTER DATABASE ... SET colony_assign.reap_interval = 0` first and a
//! `pg_terminate_backend` of the reaper).

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
    SignalWakeFlags,
};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use std::collections::HashMap;
use std::ffi::CString;
use std::time::{Duration, Instant};

/// Milliseconds between reap() passes in each database; 0 turns the reaper off (settable per
/// database with ALTER DATABASE ... SET).
static REAP_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// Database the launcher connects to in order to list the others.
static LAUNCHER_DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));

const LAUNCHER_NAPTIME: Duration = Duration::from_secs(10);
const WORKER_TYPE: &str = "colony_assign worker";

pub fn init() {
    GucRegistry::define_int_guc(
        c"colony_assign.reap_interval",
        c"Milliseconds between reap() passes of the background reaper; 0 = off.",
        c"Per database with ALTER DATABASE ... SET. The reaper only runs when colony_assign is in shared_preload_libraries.",
        &REAP_INTERVAL_MS,
        0,
        3_600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"colony_assign.launcher_database",
        c"Database the colony_assign launcher connects to in order to list databases.",
        c"Read when the launcher starts. (SIGHUP rather than POSTMASTER context: the library is also loaded into ordinary sessions, where defining a POSTMASTER setting is fatal.)",
        &LAUNCHER_DATABASE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // SAFETY: a plain read of a flag PostgreSQL sets while loading preload libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        BackgroundWorkerBuilder::new("colony_assign launcher")
            .set_type("colony_assign launcher")
            .set_library("colony_assign")
            .set_function("colony_assign_launcher_main")
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(5)))
            .load();
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn colony_assign_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = LAUNCHER_DATABASE
        .get()
        .and_then(|d| d.into_string().ok())
        .unwrap_or_else(|| "postgres".into());
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    log!("colony_assign launcher started (listing databases from {database:?})");

    let mut reapers: HashMap<u32, DynamicBackgroundWorker> = HashMap::new();
    let mut last_tried: HashMap<u32, u64> = HashMap::new();
    let mut round: u64 = 0;
    loop {
        round += 1;
        reapers.retain(|_, reaper| {
            !matches!(
                reaper.pid(),
                Err(BackgroundWorkerStatus::Stopped | BackgroundWorkerStatus::PostmasterDied)
            )
        });
        // Databases where reaping is switched off (ALTER DATABASE ... SET
        // colony_assign.reap_interval = 0, visible in a shared catalog) are skipped without
        // spending a worker slot on them.
        let databases: Vec<u32> = BackgroundWorker::transaction(|| {
            Spi::connect(|client| {
                client
                    .select(
                        "SELECT d.oid FROM pg_catalog.pg_database d
                         WHERE d.datallowconn AND NOT d.datistemplate
                           AND NOT EXISTS (
                               SELECT FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) AS c(setting)
                               WHERE s.setdatabase = d.oid AND s.setrole = 0
                                 AND c.setting ~ '^colony_assign\\.reap_interval=0(ms|s|min|h|d)?$')",
                        None,
                        &[],
                    )?
                    .map(|row| row.get::<pg_sys::Oid>(1).map(|oid| oid.map(u32::from)))
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .unwrap_or_else(|e| {
            warning!("colony_assign launcher: listing databases failed: {e}");
            Vec::new()
        })
        .into_iter()
        .flatten()
        .collect();
        // Least recently tried first, so no database starves when worker slots are scarce.
        let mut waiting: Vec<u32> = databases
            .into_iter()
            .filter(|oid| !reapers.contains_key(oid))
            .collect();
        waiting.sort_by_key(|oid| last_tried.get(oid).copied().unwrap_or(0));
        for oid in waiting {
            last_tried.insert(oid, round);
            let started = BackgroundWorkerBuilder::new(&format!("colony_assign worker {oid}"))
                .set_type(WORKER_TYPE)
                .set_library("colony_assign")
                .set_function("colony_assign_worker_main")
                .set_argument(pg_sys::Oid::from(oid).into_datum())
                .enable_spi_access()
                .set_restart_time(None)
                .load_dynamic();
            match started {
                Ok(reaper) => {
                    reapers.insert(oid, reaper);
                }
                Err(_) => {
                    // Out of worker slots (max_worker_processes): the rest wait for the next round.
                    warning!(
                        "colony_assign launcher: no free worker slot for a reaper (database {oid}); retrying in {}s",
                        LAUNCHER_NAPTIME.as_secs()
                    );
                    break;
                }
            }
        }
        if !BackgroundWorker::wait_latch(Some(LAUNCHER_NAPTIME)) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: reloading the configuration file in the worker's main loop, as PostgreSQL's own workers do.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn colony_assign_worker_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
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
    let relaying = crate::relay::register();
    let mut next_reap = Instant::now();
    loop {
        if relaying {
            relay_pending();
        }
        let interval = Duration::from_millis(REAP_INTERVAL_MS.get().max(1) as u64);
        if Instant::now() >= next_reap {
            // A failing pass raises an ERROR, which ends this worker; the launcher starts a
            // new one on its next round.
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
        if !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: reloading the configuration file in the worker's main loop, as PostgreSQL's own workers do.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
    if relaying {
        crate::relay::unregister();
        relay_pending(); // whatever arrived while stopping
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
