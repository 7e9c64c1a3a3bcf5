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
//! It is a hint path, like every notification: if the table is full, or the worker is gone
//! between a commit's check and its hand-over, counts are lost and the coordinators' catch-up
//! (told at once through `ca_catchup` on overflow) finds the work. Without preload, or with
//! `colony_assign.notify_relay = off`, or while a database has no worker, transactions NOTIFY
//! themselves at commit as before.

use colony_proto::CHANNEL_LEN;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgLwLock, pg_shmem_init};

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
    /// Counts were dropped for this database (table full): the worker asks for a catch-up.
    overflow: bool,
}

#[derive(Copy, Clone)]
pub struct Table {
    workers: [Worker; WORKERS],
    pending: [Pending; SLOTS],
}

impl Default for Table {
    fn default() -> Self {
        Table {
            workers: [Worker {
                db: 0,
                procno: 0,
                overflow: false,
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
static mut IN_SHARED_MEMORY: bool = false;

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
    // SAFETY: reads a flag PostgreSQL sets while loading preload libraries; writes our own
    // static before any backend exists.
    unsafe {
        if pg_sys::process_shared_preload_libraries_in_progress {
            pg_shmem_init!(TABLE);
            IN_SHARED_MEMORY = true;
        }
    }
}

fn in_shared_memory() -> bool {
    // SAFETY: written once in the postmaster before forking, read-only afterwards.
    unsafe { IN_SHARED_MEMORY }
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
    TABLE.share().workers.iter().any(|w| w.db == db)
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
        let Some(worker) = table.workers.iter().position(|w| w.db == db) else {
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
pub fn register() -> bool {
    if !in_shared_memory() {
        return false;
    }
    let db = my_database();
    // SAFETY: MyProc is this process's PGPROC.
    let procno = unsafe { (*pg_sys::MyProc).pgprocno };
    let mut table = TABLE.exclusive();
    let free = table
        .workers
        .iter()
        .position(|w| w.db == db)
        .or_else(|| table.workers.iter().position(|w| w.db == 0));
    match free {
        Some(i) => {
            table.workers[i] = Worker {
                db,
                procno,
                overflow: false,
            };
            true
        }
        None => false,
    }
}

pub fn unregister() {
    if !in_shared_memory() {
        return;
    }
    let db = my_database();
    // SAFETY: as in register().
    let procno = unsafe { (*pg_sys::MyProc).pgprocno };
    let mut table = TABLE.exclusive();
    for w in table
        .workers
        .iter_mut()
        .filter(|w| w.db == db && w.procno == procno)
    {
        w.db = 0;
    }
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
