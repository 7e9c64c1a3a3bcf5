//! The launcher: one per cluster. Connects to `colony_assign.launcher_database`, lists the
//! databases (queries/launcher_databases.sql), and starts a worker for each database that has
//! none running; least recently tried first, so none starves when worker slots are scarce.
//! Wakes every 10 s, and when a CREATE EXTENSION commits (relay.rs, `wake_launcher_at_commit`).

use super::{LAUNCHER_DATABASE, attach_signal_handlers, reload_configuration_if_asked};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
};
use pgrx::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

const ROUND: Duration = Duration::from_secs(10);
pub const WORKER_TYPE: &str = "colony_assign worker";

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn colony_assign_launcher_main(_arg: pg_sys::Datum) {
    attach_signal_handlers();
    let database = LAUNCHER_DATABASE
        .get()
        .and_then(|d| d.into_string().ok())
        .unwrap_or_else(|| "postgres".into());
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    crate::relay::register_launcher();
    log!("colony_assign launcher started (listing databases from {database:?})");

    let mut workers: HashMap<u32, DynamicBackgroundWorker> = HashMap::new();
    let mut last_tried: HashMap<u32, u64> = HashMap::new();
    let mut round: u64 = 0;
    loop {
        round += 1;
        workers.retain(|_, worker| {
            !matches!(
                worker.pid(),
                Err(BackgroundWorkerStatus::Stopped | BackgroundWorkerStatus::PostmasterDied)
            )
        });
        let mut waiting: Vec<u32> = databases()
            .into_iter()
            .filter(|oid| !workers.contains_key(oid))
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
                Ok(worker) => {
                    workers.insert(oid, worker);
                }
                Err(_) => {
                    // Out of worker slots (max_worker_processes): the rest wait for the next round.
                    warning!(
                        "colony_assign launcher: no free worker slot (database {oid}); retrying in {}s",
                        ROUND.as_secs()
                    );
                    break;
                }
            }
        }
        // A SIGTERM ends the process inside the wait (PostgreSQL's die()).
        if !BackgroundWorker::wait_latch(Some(ROUND)) {
            break;
        }
        reload_configuration_if_asked();
    }
}

/// The databases that should have a worker.
fn databases() -> Vec<u32> {
    BackgroundWorker::transaction(|| {
        Spi::connect(|client| {
            client
                .select(include_str!("../queries/launcher_databases.sql"), None, &[])?
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
    .collect()
}
