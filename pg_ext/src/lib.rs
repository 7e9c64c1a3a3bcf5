//! colony_assign: a ColonyOS-style process scheduler inside PostgreSQL.
//!
//! This file is wiring only. The data model, every signature, grant and comment, and the rarer
//! state transitions are SQL (`sql/*.sql` at the workspace root); Rust is used where it earns
//! its place:
//! - the hot path, below the SQL executor: [`claim`] (assign), [`finish`] (close, fail,
//!   close_many), [`submit`] (submit, submit_many, workflow inserts), over [`table`] (direct
//!   heap and index access with per-session caches), [`members`] (colony and executor rows),
//!   [`spec`] (specs parsed once into typed rows), [`fcall`] (C-function plumbing), [`json`]
//!   and [`spi`] (the SQL they still run, under a pinned search path);
//! - [`strict`]: strict mode's per (colony, type) lock, given back before the commit's flush;
//! - [`cursor`]: per-session scan cursors that keep assign() off the dead head of its queue,
//!   invalidated by shared queue-range epochs;
//! - [`channel`]: notification channel names, shared byte for byte with the coordinator
//!   through the `colony-proto` crate;
//! - [`notify`]: per-transaction NOTIFY coalescing (one NOTIFY per key per transaction,
//!   payload = count);
//! - [`idempotency`]: submits that carry a key return the first call's ids when retried;
//! - [`identity`]: who a session acts as (`login(token)`), checked by every entry point;
//! - [`xact`]: receives PostgreSQL's transaction events once and tells the modules above;
//! - [`relay`]: hands notifications to a background worker after commit, so submitters never
//!   take PostgreSQL's global NOTIFY commit lock;
//! - [`background`]: the launcher and the per-database workers (relay and reaper);
//! - [`workflow`]: cycle detection for submitted DAGs.

use pgrx::prelude::*;

mod background;
mod channel;
mod claim;
mod cursor;
mod error;
mod fcall;
mod finish;
mod idempotency;
mod identity;
mod json;
mod members;
mod notify;
mod relay;
mod spec;
mod spi;
mod strict;
mod submit;
mod table;
mod workflow;
mod xact;

::pgrx::pg_module_magic!();

// Tables, the public composite type and indexes come first; the SQL functions reference the Rust
// functions (`_wake`, `channel`, ...), so they are created after those; grants and comments last.
pgrx::extension_sql_file!("../../sql/bootstrap.sql", bootstrap);
pgrx::extension_sql_file!("../../sql/validate.sql", requires = ["bootstrap"]);
pgrx::extension_sql_file!(
    "../../sql/processes.sql",
    requires = ["validate", notify::_wake, identity::_may_see]
);
pgrx::extension_sql_file!("../../sql/colonies.sql", requires = ["processes"]);
pgrx::extension_sql_file!(
    "../../sql/executors.sql",
    requires = ["colonies", channel::_executor_channels]
);
pgrx::extension_sql_file!("../../sql/assign.sql", requires = ["processes"]);
pgrx::extension_sql_file!("../../sql/reap.sql", requires = ["processes"]);
pgrx::extension_sql_file!("../../sql/coordinator.sql", requires = ["executors"]);
pgrx::extension_sql_file!(
    "../../sql/workflows.sql",
    requires = ["processes", workflow::_find_cycle]
);
pgrx::extension_sql_file!(
    "../../sql/logs.sql",
    requires = [
        "executors",
        identity::_trusted,
        identity::_session_colony,
        identity::_acting_as
    ]
);
pgrx::extension_sql_file!("../../sql/identity.sql", requires = ["bootstrap"]);
pgrx::extension_sql_file!(
    "../../sql/admin.sql",
    requires = ["colonies", "executors", "identity"]
);
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
        "identity",
        background::_wake_launcher,
        channel::channel,
        strict::_strict_lock
    ]
);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    cursor::init();
    xact::init();
    relay::init();
    background::init();
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
