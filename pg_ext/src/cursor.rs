//! Per-session scan cursors for assign(), invalidated by queue-range epochs.
//!
//! A claim leaves a dead entry at the head of its queue range in the partial index; vacuum
//! removes it only once no snapshot can still see the claimed row. While some long transaction
//! holds an old snapshot, nothing can be removed and every assign that scans from the head walks
//! every claim made since (measured: throughput fell to a quarter of normal in 60 s). So each
//! session remembers, per queue range (colony, type, location or none), the position of the last
//! row it claimed, and scans from there: it walks only what other sessions claimed since.
//!
//! The cursor only moves where a scan *starts*; exactness of claims is still SKIP LOCKED plus
//! the state checks. What keeps order: anything that can make a process waiting *behind* a
//! position bumps its range's epoch in shared memory after it commits, and a session drops a
//! cursor whose range epoch moved since the cursor was set (it reads the epoch before it takes
//! its snapshot, so a change it could see is never missed). The bumps:
//! - every requeue, release, workflow release and resume (all go through `_wake`);
//! - a submit whose first new position in the range lies before the furthest position any
//!   session has claimed there (a higher priority, or an id that committed after a later one
//!   was claimed) — plain submits at the tail bump nothing, so cursors survive steady load;
//! - a claim that rolls back (also to a savepoint): its rows are waiting again.
//!
//! A ranged scan that comes up short continues from the head up to where it started, so "fewer
//! than asked" still means "no more". `colony_assign.scan_cursor_ttl` remains as a backstop for
//! the one race left (a submit committing while a claim in the same range is between its
//! snapshot and its publication of the claimed position). Strict mode never uses cursors.
//!
//! Epochs live in a fixed shared table indexed by a hash of (database, range): two ranges that
//! share a slot only bump each other (a needless rescan, never a missed one). Without
//! `shared_preload_libraries` there is no shared table, and cursors are off.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgAtomic, pg_shmem_init};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a session scans from its cursor before it scans from the head again; 0 = never
/// use cursors (every scan from the head).
static TTL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

const SLOTS: usize = 4096;

pub struct Epochs {
    /// Bumped when work may have become waiting behind a position of the range.
    epoch: [AtomicU64; SLOTS],
    /// The furthest position any session has claimed in the range (packed, see `pack`).
    furthest_claim: [AtomicU64; SLOTS],
}

impl Default for Epochs {
    fn default() -> Self {
        Epochs {
            epoch: std::array::from_fn(|_| AtomicU64::new(0)),
            furthest_claim: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

// SAFETY: plain atomics, no pointers.
unsafe impl PGRXSharedMemory for Epochs {}

static EPOCHS: PgAtomic<Epochs> = unsafe { PgAtomic::new(c"colony_assign_cursor_epochs") };

/// Set in the postmaster when preloaded (the shared table exists), inherited by backends.
static SHARED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

// pg_shmem_init! expands cfg(feature = "pg13" ...) checks into this crate, which only has pg15.
#[allow(unexpected_cfgs)]
pub fn init() {
    GucRegistry::define_int_guc(
        c"colony_assign.scan_cursor_ttl",
        c"How long assign() scans a queue from where this session last claimed before it starts at the head again; 0 = always from the head.",
        c"A backstop: work that becomes waiting behind a session's position is normally seen by its next assign (queue-range epochs).",
        &TTL_MS,
        0,
        60_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    // SAFETY: reads a flag PostgreSQL sets while loading preload libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(EPOCHS);
        SHARED.store(true, Ordering::Relaxed);
    }
}

/// A queue position: ((-priority), id), the order assign() hands work out in.
pub type Position = (i32, i64);

/// Packs a position into 63 ordered bits: 17 for -priority (offset to be positive), 46 for the
/// id (ids past 2^46, 7e13, all compare equal: never reached in practice).
fn pack((neg_priority, id): Position) -> u64 {
    let p = (neg_priority + 50_001).clamp(0, 100_002) as u64;
    let id = (id.max(0) as u64).min((1 << 46) - 1);
    (p << 46) | id
}

/// A queue range of one database: the processes of (colony, executor type) at one location,
/// with no location, or waiting for one preferred location (sql/bootstrap.sql has the index of
/// each kind).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Range {
    pub colony: String,
    pub executor_type: String,
    pub location: Option<String>,
    /// The preferred-location range of `location` rather than its located range.
    pub preferred: bool,
}

impl Range {
    /// The located range of `location`, or the anywhere range when None.
    pub fn new(colony: &str, executor_type: &str, location: Option<&str>) -> Range {
        Range {
            colony: colony.into(),
            executor_type: executor_type.into(),
            location: location.map(Into::into),
            preferred: false,
        }
    }

    /// The range of processes still waiting for `location`, their preferred one.
    pub fn preferred(colony: &str, executor_type: &str, location: &str) -> Range {
        Range {
            preferred: true,
            ..Range::new(colony, executor_type, Some(location))
        }
    }

    fn slot(&self) -> usize {
        // FNV-1a over the database and the length-prefixed fields: stable across backends.
        // SAFETY: a plain read of the backend's database id.
        let db = u32::from(unsafe { pg_sys::MyDatabaseId });
        let mut hash: u64 = 0xcbf29ce484222325;
        let mut eat = |bytes: &[u8]| {
            for b in (bytes.len() as u32).to_le_bytes().iter().chain(bytes) {
                hash = (hash ^ u64::from(*b)).wrapping_mul(0x100000001b3);
            }
        };
        eat(&db.to_le_bytes());
        eat(self.colony.as_bytes());
        eat(self.executor_type.as_bytes());
        match &self.location {
            Some(l) => eat(l.as_bytes()),
            None => eat(&[0xff]),
        }
        eat(&[u8::from(self.preferred)]);
        (hash % SLOTS as u64) as usize
    }
}

fn epochs() -> Option<&'static Epochs> {
    SHARED.load(Ordering::Relaxed).then(|| EPOCHS.get())
}

struct Cursor {
    position: Position,
    /// The range's epoch read before the snapshot of the scan that set this cursor.
    epoch: u64,
    since: Instant,
}

/// What this transaction will do to range epochs when it ends.
#[derive(Default)]
struct Pending {
    /// Ranges that get an unconditional bump at commit (requeues and the like).
    bump_at_commit: HashMap<Range, ()>,
    /// Submits: the first new position per range, bumped at commit only if behind a claim.
    submitted: HashMap<Range, Position>,
    /// Ranges this transaction claimed in, with the subtransaction level of the claim: bumped
    /// when that (sub)transaction rolls back.
    claimed: Vec<(i32, Range)>,
}

thread_local! {
    static CURSORS: RefCell<HashMap<Range, Cursor>> = RefCell::new(HashMap::new());
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

fn ttl() -> Duration {
    Duration::from_millis(TTL_MS.get().max(0) as u64)
}

/// The range's epoch now; assign() reads it before taking the snapshot it scans with.
pub fn epoch(range: &Range) -> u64 {
    epochs().map_or(0, |e| e.epoch[range.slot()].load(Ordering::Acquire))
}

/// Where this session's scan of `range` starts (exclusive), or None for the head: there is no
/// cursor, it expired, or the range's epoch moved since it was set (`epoch` as read before the
/// call's snapshot).
pub fn start(range: &Range, epoch: u64) -> Option<Position> {
    if epochs().is_none() || TTL_MS.get() <= 0 {
        return None;
    }
    CURSORS.with_borrow_mut(|cursors| match cursors.get(range) {
        Some(c) if c.epoch == epoch && c.since.elapsed() < ttl() => Some(c.position),
        Some(_) => {
            cursors.remove(range);
            None
        }
        None => None,
    })
}

/// A claim at `position` in `range` (called as each row is claimed, before commit).
pub fn claimed(range: &Range, position: Position) {
    let Some(e) = epochs() else { return };
    e.furthest_claim[range.slot()].fetch_max(pack(position), Ordering::AcqRel);
    // SAFETY: a plain read of the transaction state.
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    PENDING.with_borrow_mut(|p| {
        if !p.claimed.iter().any(|(l, r)| *l == level && r == range) {
            p.claimed.push((level, range.clone()));
        }
    });
}

/// After a call's scan of `range`: `last` is the last position claimed from it (None if
/// nothing), `exhausted` whether the scan reached the end of the range. A session keeps
/// scanning from its last claim; an exhausted range drops the cursor.
pub fn advance(range: &Range, epoch: u64, last: Option<Position>, exhausted: bool) {
    if epochs().is_none() {
        return;
    }
    CURSORS.with_borrow_mut(|cursors| {
        if exhausted {
            cursors.remove(range);
        } else if let Some(position) = last {
            match cursors.get_mut(range) {
                Some(c) if c.epoch == epoch => c.position = position,
                _ => {
                    cursors.insert(
                        range.clone(),
                        Cursor {
                            position,
                            epoch,
                            since: Instant::now(),
                        },
                    );
                }
            }
        }
    });
}

/// Work became assignable in `range` other than by a plain submit: every cursor of the range
/// is dropped once this transaction commits.
pub fn made_assignable(range: Range) {
    if epochs().is_some() {
        PENDING.with_borrow_mut(|p| {
            p.bump_at_commit.insert(range, ());
        });
    }
}

/// A submit of a process at `position` in `range`.
pub fn submitted(range: &Range, position: Position) {
    if epochs().is_some() {
        PENDING.with_borrow_mut(|p| {
            p.submitted
                .entry(range.clone())
                .and_modify(|first| *first = (*first).min(position))
                .or_insert(position);
        });
    }
}

fn bump(e: &Epochs, range: &Range) {
    e.epoch[range.slot()].fetch_add(1, Ordering::AcqRel);
}

/// The transaction committed (its rows are visible): apply its bumps.
pub fn at_commit() {
    let pending = PENDING.with_borrow_mut(std::mem::take);
    let Some(e) = epochs() else { return };
    for range in pending.bump_at_commit.keys() {
        bump(e, range);
    }
    for (range, first) in &pending.submitted {
        if pack(*first) < e.furthest_claim[range.slot()].load(Ordering::Acquire) {
            bump(e, range);
        }
    }
}

/// The transaction rolled back: what it claimed is waiting again (behind other sessions'
/// cursors, and behind this session's own).
pub fn at_abort() {
    let pending = PENDING.with_borrow_mut(std::mem::take);
    if let Some(e) = epochs() {
        for (_, range) in &pending.claimed {
            bump(e, range);
        }
    }
    CURSORS.with_borrow_mut(HashMap::clear);
}

/// A subtransaction at `level` rolled back: claims made in it are waiting again.
pub fn at_subabort(level: i32) {
    let mut undone = Vec::new();
    PENDING.with_borrow_mut(|p| {
        p.claimed.retain(|(l, r)| {
            let keep = *l < level;
            if !keep {
                undone.push(r.clone());
            }
            keep
        })
    });
    if let Some(e) = epochs() {
        for range in &undone {
            bump(e, range);
        }
    }
    CURSORS.with_borrow_mut(|cursors| {
        for range in &undone {
            cursors.remove(range);
        }
    });
}

/// A subtransaction at `level` committed: its claims now belong to the parent.
pub fn at_subcommit(level: i32) {
    PENDING.with_borrow_mut(|p| {
        for (l, _) in p.claimed.iter_mut() {
            if *l >= level {
                *l = level - 1;
            }
        }
    });
}
