//! colony_assign: a ColonyOS-style process scheduler inside PostgreSQL.
//!
//! This file is wiring only. The data model, every state transition and the assign statement
//! are SQL (`sql/*.sql` at the workspace root); Rust is used where it earns its place:
//! - [`channel`]: notification channel names, shared byte for byte with the coordinator
//!   through the `colony-proto` crate;
//! - [`cursor`]: per-session scan cursors that keep assign() off the dead head of its queue;
//! - [`notify`]: per-transaction NOTIFY coalescing (one NOTIFY per key per transaction,
//!   payload = count), which needs transaction and subtransaction callbacks;
//! - [`relay`]: hands notifications to a background worker after commit, so submitters never
//!   take PostgreSQL's global NOTIFY commit lock;
//! - [`worker`]: the background launcher and per-database workers (relay and reaper);
//! - [`spec`]: spec validation (compiled: the SQL version cost most of a single submit);
//! - [`workflow`]: cycle detection for submitted DAGs.

use pgrx::prelude::*;

mod channel;
mod cursor;
mod error;
mod notify;
mod relay;
mod spec;
mod worker;
mod workflow;

::pgrx::pg_module_magic!();

// Tables, the public composite type and indexes come first; the SQL functions reference the Rust
// functions (`_wake`, `channel`, ...), so they are created after those; grants and comments last.
pgrx::extension_sql_file!("../../sql/bootstrap.sql", bootstrap);
pgrx::extension_sql_file!(
    "../../sql/validate.sql",
    requires = ["bootstrap", spec::_spec_problem]
);
pgrx::extension_sql_file!(
    "../../sql/processes.sql",
    requires = ["validate", notify::_wake]
);
pgrx::extension_sql_file!("../../sql/colonies.sql", requires = ["processes"]);
pgrx::extension_sql_file!(
    "../../sql/executors.sql",
    requires = ["colonies", channel::_executor_channels]
);
pgrx::extension_sql_file!(
    "../../sql/assign.sql",
    requires = [
        "processes",
        cursor::_cursor_start,
        cursor::_cursor_advance,
        cursor::_cursor_used
    ]
);
pgrx::extension_sql_file!("../../sql/reap.sql", requires = ["processes"]);
pgrx::extension_sql_file!("../../sql/coordinator.sql", requires = ["executors"]);
pgrx::extension_sql_file!(
    "../../sql/workflows.sql",
    requires = ["processes", workflow::_find_cycle]
);
pgrx::extension_sql_file!("../../sql/logs.sql", requires = ["processes"]);
pgrx::extension_sql_file!(
    "../../sql/finalize.sql",
    finalize,
    requires = [
        "colonies",
        "executors",
        "assign",
        "reap",
        "coordinator",
        "workflows",
        "logs",
        channel::channel
    ]
);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    cursor::init();
    notify::init();
    relay::init();
    worker::init();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
