//! The NOTIFY relay: takes NOTIFY off the submitters' commits.
//!
//! PostgreSQL serializes the commits of all transactions that issued NOTIFY (PreCommit_Notify
//! takes a cluster-wide lock and holds it through the commit's WAL flush), so submitters that
//! each NOTIFY commit at about half the rate of plain inserts. With the extension preloaded,
//! a committing transaction instead hands its coalesced counts, after it has committed, to
//! this shared-memory table and sets the latch of its database's background worker, which
//! sends them from one short transaction of its own (synchronous_commit off). Only that one
//! process ever takes the NOTIFY lock, and counts from many commits that arrive while it is
//! busy are merged into one NOTIFY per key.
//!
//! A worker is registered for exactly as long as its process lives: it registers with its pid,
//! an exit callback unregisters it however it ends (SIGTERM, FATAL, an ERROR in a reap pass),
//! and a committing session checks at PRE_COMMIT that the registered process is still that pid
//! before it relies on it. Without a live relay, transactions NOTIFY themselves at commit, as
//! they do without preload or with `colony_assign.notify_relay = off`.
//!
//! It is a hint path, like every notification: if the table is full, or the worker dies between
//! a commit's check and its hand-over (microseconds), counts are lost and the coordinators'
//! catch-up (told at once through `ca_catchup` on overflow) finds the work; SQL-direct
//! executors bound the same window by assigning again after at most their LISTEN timeout
//! (docs/sql-api.md).

use colony_proto::CHANNEL_LEN;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgLwLock, pg_shmem_init};
use std::sync::atomic::{AtomicBool, Ordering};

/// Pending (database, channel) counts across the cluster.
const SLOTS: usize = 4096;
/// Databases with a relaying worker at the same time.
const WORKERS: usize = 128;

#[derive(Copy, Clone)]
struct Pending {
    db: u32,
    count: u64,
    channel: [u8; CHANNEL_LEN],
}

#[derive(Copy, Clone)]
struct Worker {
    db: u32,
    procno: i32,
    /// The registered process; its PGPROC slot at `procno` must still show this pid.
    pid: i32,
    /// Counts were dropped for this database (table full): the worker asks for a catch-up.
    overflow: bool,
    /// Processes with a preferred location were submitted: the worker looks again when the
    /// next wait ends.
    locality: bool,
}

#[derive(Copy, Clone)]
pub struct Table {
    workers: [Worker; WORKERS],
    /// The launcher's PGPROC number + 1 (0: none yet), for wake-ups after CREATE EXTENSION.
    launcher: i32,
    pending: [Pending; SLOTS],
}

impl Default for Table {
    fn default() -> Self {
        Table {
            launcher: 0,
            workers: [Worker {
                db: 0,
                procno: 0,
                pid: 0,
                overflow: false,
                locality: false,
            }; WORKERS],
            pending: [Pending {
                db: 0,
                count: 0,
                channel: [0; CHANNEL_LEN],
            }; SLOTS],
        }
    }
}

// SAFETY: plain old data (integers and byte arrays) with no pointers; PgLwLock guards access.
unsafe impl PGRXSharedMemory for Table {}

static TABLE: PgLwLock<Table> = unsafe { PgLwLock::new(c"colony_assign_relay") };

/// Set in the postmaster when the library is preloaded (so the table exists); inherited by
/// every backend it forks.
static IN_SHARED_MEMORY: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This transaction ran CREATE EXTENSION: wake the launcher when it commits.
    static WAKE_LAUNCHER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// This transaction submitted processes that wait for a preferred location.
    static LOCALITY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);

// pg_shmem_init! expands cfg(feature = "pg13" ...) checks into this crate, which only has pg15.
#[allow(unexpected_cfgs)]
pub fn init() {
    GucRegistry::define_bool_guc(
        c"colony_assign.notify_relay",
        c"Hand notifications to the database's background worker instead of NOTIFYing at commit.",
        c"Only with colony_assign in shared_preload_libraries and a running worker for the database.",
        &ENABLED,
        GucContext::Suset,
        GucFlags::default(),
    );
    // SAFETY: reads a flag PostgreSQL sets while loading preload libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(TABLE);
        IN_SHARED_MEMORY.store(true, Ordering::Relaxed);
    }
}

fn in_shared_memory() -> bool {
    IN_SHARED_MEMORY.load(Ordering::Relaxed)
}

/// Whether the process registered as `w` is still alive: its PGPROC slot shows its pid.
fn alive(w: &Worker) -> bool {
    // SAFETY: procno indexes the fixed PGPROC array; reading a pid is a plain load.
    w.db != 0 && unsafe { (*(*pg_sys::ProcGlobal).allProcs.add(w.procno as usize)).pid } == w.pid
}

fn my_database() -> u32 {
    // SAFETY: a plain read of the backend's database id.
    u32::from(unsafe { pg_sys::MyDatabaseId })
}

/// Called just before commit: whether this transaction may hand its counts to a worker
/// after committing, instead of NOTIFYing itself.
pub fn available() -> bool {
    if !in_shared_memory() || !ENABLED.get() {
        return false;
    }
    let db = my_database();
    TABLE.share().workers.iter().any(|w| w.db == db && alive(w))
}

fn slot_of(db: u32, channel: &[u8]) -> usize {
    // FNV-1a: a cheap, well-spread start for linear probing.
    let mut hash: u64 = 0xcbf29ce484222325 ^ u64::from(db);
    for b in channel {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    (hash % SLOTS as u64) as usize
}

/// Called after commit (so it must not raise): adds the counts to the table and wakes the
/// database's worker. A count with no room left is dropped and the worker told to ask for a
/// catch-up.
pub fn hand_over<'a>(counts: impl Iterator<Item = (&'a str, u64)>) {
    let db = my_database();
    let procno = {
        let mut table = TABLE.exclusive();
        let Some(worker) = table.workers.iter().position(|w| w.db == db && alive(w)) else {
            return; // the worker went away since the pre-commit check: the catch-up covers it
        };
        for (channel, count) in counts {
            let channel = channel.as_bytes();
            if channel.len() != CHANNEL_LEN {
                continue;
            }
            let start = slot_of(db, channel);
            let mut placed = false;
            for probe in 0..SLOTS {
                let slot = &mut table.pending[(start + probe) % SLOTS];
                if slot.db == db && slot.channel == channel {
                    slot.count += count;
                    placed = true;
                    break;
                }
                if slot.db == 0 {
                    // A hole left by a worker's take() can make an existing entry of ours
                    // unreachable; then this becomes a second entry, which take() sums.
                    slot.db = db;
                    slot.count = count;
                    slot.channel.copy_from_slice(channel);
                    placed = true;
                    break;
                }
            }
            if !placed {
                table.workers[worker].overflow = true;
            }
        }
        table.workers[worker].procno
    };
    // SAFETY: procno indexes the fixed PGPROC array; setting a latch is safe from any backend.
    unsafe {
        let proc = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
        pg_sys::SetLatch(&raw mut (*proc).procLatch);
    }
}

/// Worker side: announces this process as its database's relay. Returns false when there is
/// no shared table (not preloaded) or no free slot. The worker registers whatever its own
/// `notify_relay` says: each session decides at its commit whether to use the relay, so
/// changing the setting takes effect for new sessions without restarting the worker.
/// Registration lasts until the process exits: this callback runs however it exits.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn unregister_at_exit(_code: i32, _arg: pg_sys::Datum) {
    unregister();
}

pub fn register() -> bool {
    if !in_shared_memory() {
        return false;
    }
    let db = my_database();
    // SAFETY: MyProc is this process's PGPROC; MyProcPid its pid.
    let (procno, pid) = unsafe { ((*pg_sys::MyProc).pgprocno, pg_sys::MyProcPid) };
    let registered = {
        let mut table = TABLE.exclusive();
        // A slot of this database whose process is gone (or a free one) is ours.
        let free = table
            .workers
            .iter()
            .position(|w| w.db == db && !alive(w))
            .or_else(|| table.workers.iter().position(|w| w.db == 0));
        match free {
            Some(i) => {
                table.workers[i] = Worker {
                    db,
                    procno,
                    pid,
                    overflow: false,
                    // A new worker looks for preferred-location waits at once.
                    locality: true,
                };
                true
            }
            None => false,
        }
    };
    if registered {
        // SAFETY: a static callback, run before this process detaches from shared memory.
        unsafe { pg_sys::before_shmem_exit(Some(unregister_at_exit), pg_sys::Datum::from(0)) };
    }
    registered
}

fn unregister() {
    if !in_shared_memory() {
        return;
    }
    // SAFETY: as in register().
    let pid = unsafe { pg_sys::MyProcPid };
    let mut table = TABLE.exclusive();
    for w in table
        .workers
        .iter_mut()
        .filter(|w| w.db != 0 && w.pid == pid)
    {
        w.db = 0;
    }
}

/// The launcher announces itself, so CREATE EXTENSION can wake it.
pub fn register_launcher() {
    if in_shared_memory() {
        // SAFETY: MyProc is this process's PGPROC.
        let procno = unsafe { (*pg_sys::MyProc).pgprocno };
        TABLE.exclusive().launcher = procno + 1;
    }
}

/// This transaction installs the extension: wake the launcher once it commits.
pub fn wake_launcher_at_commit() {
    WAKE_LAUNCHER.set(true);
}

/// This transaction submitted processes that wait for a preferred location: tell the worker
/// when it commits, so it wakes when their wait ends.
pub fn locality_at_commit() {
    LOCALITY.set(true);
}

/// Worker side: whether preferred-location submits committed since the last call.
pub fn take_locality() -> bool {
    if !in_shared_memory() {
        return false;
    }
    let db = my_database();
    let mut table = TABLE.exclusive();
    table
        .workers
        .iter_mut()
        .find(|w| w.db == db)
        .is_some_and(|w| std::mem::replace(&mut w.locality, false))
}

/// COMMIT (must not raise): the launcher looks for databases now; the worker learns of new
/// preferred-location waits.
pub fn at_commit() {
    if LOCALITY.replace(false) && in_shared_memory() {
        let db = my_database();
        let procno = {
            let mut table = TABLE.exclusive();
            table
                .workers
                .iter_mut()
                .find(|w| w.db == db && alive(w))
                .map(|w| {
                    w.locality = true;
                    w.procno
                })
        };
        if let Some(procno) = procno {
            // SAFETY: procno indexes the fixed PGPROC array; setting a latch is safe from any backend.
            unsafe {
                let proc = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
                pg_sys::SetLatch(&raw mut (*proc).procLatch);
            }
        }
    }
    if !WAKE_LAUNCHER.replace(false) || !in_shared_memory() {
        return;
    }
    let launcher = TABLE.share().launcher;
    if launcher > 0 {
        // SAFETY: a PGPROC number the launcher registered; setting a latch is safe from any backend.
        unsafe {
            let proc = (*pg_sys::ProcGlobal).allProcs.add((launcher - 1) as usize);
            pg_sys::SetLatch(&raw mut (*proc).procLatch);
        }
    }
}

pub fn at_abort() {
    WAKE_LAUNCHER.set(false);
    LOCALITY.set(false);
}

/// Worker side: everything pending for this database (summed per channel), and whether some
/// counts were dropped since the last take.
pub fn take() -> (Vec<(String, u64)>, bool) {
    let db = my_database();
    let mut out: Vec<(String, u64)> = Vec::new();
    let mut table = TABLE.exclusive();
    let overflow = table
        .workers
        .iter_mut()
        .find(|w| w.db == db)
        .map(|w| std::mem::replace(&mut w.overflow, false))
        .unwrap_or(false);
    for slot in table.pending.iter_mut().filter(|s| s.db == db) {
        let channel = String::from_utf8_lossy(&slot.channel).into_owned();
        match out.iter_mut().find(|(c, _)| *c == channel) {
            Some((_, n)) => *n += slot.count,
            None => out.push((channel, slot.count)),
        }
        slot.db = 0;
    }
    (out, overflow)
}
