//! Background processes, started when the extension is in `shared_preload_libraries`:
//!
//! - [`launcher`]: one per cluster. It finds the databases that could use a worker and starts
//!   one for each that has none: every 10 s, and at once when `CREATE EXTENSION colony_assign`
//!   commits somewhere (the extension's script asks for a wake-up at its commit).
//! - [`worker`]: one per database with the extension. It relays committed notifications
//!   (relay.rs) and runs `colony_assign.reap()` every `colony_assign.reap_interval`.
//!
//! Both stop on SIGTERM through PostgreSQL's own `die()` handling, like any backend: a commit
//! waiting for synchronous replication, or any other wait that checks for interrupts, ends
//! instead of holding up a fast shutdown (or the demotion of an old primary).

mod launcher;
mod worker;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use std::ffi::CString;
use std::time::Duration;

/// Milliseconds between reap() passes in each database; 0 turns the reaper off (settable per
/// database with ALTER DATABASE ... SET).
static REAP_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// Database the launcher connects to in order to list the others.
static LAUNCHER_DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));

// pgrx binds PostgreSQL functions as Rust wrappers; a signal handler needs the C function.
unsafe extern "C-unwind" {
    /// tcop/tcopprot.h: the SIGTERM handler of every backend (sets ProcDiePending).
    fn die(postgres_signal_arg: std::ffi::c_int);
}

/// SIGTERM as PostgreSQL's backends take it, SIGHUP through pgrx (reload the configuration).
fn attach_signal_handlers() {
    use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    // SAFETY: installing PostgreSQL's own handler in this process, as bgworker.c's default does.
    unsafe { pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(die)) };
}

fn reload_configuration_if_asked() {
    if pgrx::bgworkers::BackgroundWorker::sighup_received() {
        // SAFETY: reloading the configuration file in the worker's main loop, as PostgreSQL's own workers do.
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    }
}

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
        pgrx::bgworkers::BackgroundWorkerBuilder::new("colony_assign launcher")
            .set_type("colony_assign launcher")
            .set_library("colony_assign")
            .set_function("colony_assign_launcher_main")
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(5)))
            .load();
    }
}

/// `_wake_launcher()`: called by the extension's install script, so the new database gets its
/// worker when the CREATE EXTENSION commits (about a second), not at the launcher's next round.
#[pg_extern(volatile, parallel_unsafe)]
fn _wake_launcher() {
    crate::relay::wake_launcher_at_commit();
}
