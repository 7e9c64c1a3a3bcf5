//! assign(): what ColonyOS does in four database operations (mark the executor alive, honour a
//! paused colony, select, update), done in one call below the SQL executor.
//!
//! An executor can take processes from up to three queue ranges, each read in queue order
//! ((-priority), id):
//! - its location's range of `processes_assign_located_idx` (when it has a location),
//! - the processes that prefer its location and still wait for it, in
//!   `processes_assign_preferred_idx` (local-first placement: delay scheduling),
//! - its type's location-less range of `processes_assign_anywhere_idx`,
//! - name-targeted processes that list it (`processes_targeted_idx`, GIN) — only when a probe of
//!   that index finds an entry naming it, so executors of colonies without targeted work never
//!   pay for that arm.
//!
//! The ranges are merged row by row: the row at the smallest position among the arms' next
//! visible rows is claimed by a compare-and-set update of the version the scan read, which
//! skips a row another transaction holds or changed (SKIP LOCKED, in one step and one WAL
//! record instead of a lock and an update), so no row is locked that the merge then does not
//! take. (The targeted arm locks its candidates in one SQL statement; those that lose the merge
//! stay locked until commit.)
//!
//! Strict colonies take the (colony, type) lock first (strict.rs) and scan from the head with a
//! snapshot taken after it; distributed ones start each range at this session's scan cursor
//! (cursor.rs) and, when a range comes up short, continue from its head up to where they
//! started, so an answer with fewer rows than asked always means there were no more.

use crate::cursor::{self, Position, Range};
use crate::error::ExtError;
use crate::fcall::{Args, Materialized, sql_function};
use crate::members::{self, check_name};
use crate::table::{
    self, IndexScan, MICROS_PER_SECOND, RUNNING, Row, ScanKeys, Session, WAITING, Write,
};
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

/// Largest max_count one call may ask for.
pub const MAX_CLAIMS: i32 = 1000;

sql_function!(colony_assign_assign, pg_finfo_colony_assign_assign, assign);
sql_function!(
    colony_assign_assign_batch,
    pg_finfo_colony_assign_assign_batch,
    assign_batch
);

/// A row the targeted arm locked: where it sits in the queue, and its id.
struct Targeted {
    position: Position,
    id: i64,
}

enum Phase {
    /// Scanning positions after this session's cursor.
    AfterCursor(Position),
    /// Scanning from the head, up to (and including) `until` when the scan started at a cursor.
    FromHead { until: Option<Position> },
}

/// One B-tree range (located or anywhere).
struct Arm {
    range: Range,
    index: Oid,
    epoch: u64,
    phase: Phase,
    scan: Option<IndexScan>,
    peeked: Option<(Position, pg_sys::ItemPointerData, Row)>,
    /// The whole range has been walked.
    exhausted: bool,
    /// Position of the last row claimed from this arm.
    last: Option<Position>,
}

impl Arm {
    fn new(range: Range, index: Oid, cursors: bool) -> Arm {
        let epoch = cursor::epoch(&range);
        let phase = match cursors.then(|| cursor::start(&range, epoch)).flatten() {
            Some(position) => Phase::AfterCursor(position),
            None => Phase::FromHead { until: None },
        };
        Arm {
            range,
            index,
            epoch,
            phase,
            scan: None,
            peeked: None,
            exhausted: false,
            last: None,
        }
    }

    fn open(&mut self, session: &mut Session, snapshot: pg_sys::Snapshot) {
        let heap = session.processes;
        let index = session.index(self.index);
        let mut keys = ScanKeys::new()
            .text_eq(index, &self.range.colony)
            .text_eq(index, &self.range.executor_type);
        if let Some(location) = &self.range.location {
            keys = keys.text_eq(index, location);
        }
        if let Phase::AfterCursor((neg_priority, id)) = self.phase {
            keys = keys.after(neg_priority, id);
        }
        self.scan = Some(session.scan(heap, self.index, keys, snapshot));
    }

    /// The position of the arm's next waiting row (read, not locked).
    fn peek(&mut self, session: &mut Session, snapshot: pg_sys::Snapshot) -> Option<Position> {
        if self.peeked.is_some() || self.exhausted {
            return self.peeked.as_ref().map(|(position, _, _)| *position);
        }
        let p = session.schema.p;
        loop {
            if self.scan.is_none() {
                self.open(session, snapshot);
            }
            let scan = self.scan.as_mut().expect("opened above");
            let Some((tid, row)) = scan.next(&session.schema.processes) else {
                self.scan.take().expect("open").end();
                match self.phase {
                    // The rest of the range lies before the cursor: walk it from the head.
                    Phase::AfterCursor(start) => {
                        self.phase = Phase::FromHead { until: Some(start) };
                        continue;
                    }
                    Phase::FromHead { .. } => {
                        self.exhausted = true;
                        return None;
                    }
                }
            };
            if !waiting(&row, p) {
                continue;
            }
            let position = (
                -row.i32(p.priority).unwrap_or(0),
                row.i64(p.id).unwrap_or(0),
            );
            match self.phase {
                Phase::AfterCursor(start) if position <= start => continue,
                Phase::FromHead { until: Some(until) } if position > until => {
                    // Everything from here on was walked after the cursor.
                    self.scan.take().expect("open").end();
                    self.exhausted = true;
                    return None;
                }
                _ => {}
            }
            self.peeked = Some((position, tid, row));
            return Some(position);
        }
    }

    fn end(&mut self) {
        if let Some(scan) = self.scan.take() {
            scan.end();
        }
    }
}

/// WAITING, not blocked by workflow parents, not name-targeted: what the B-tree arms take.
fn waiting(row: &Row, p: table::ProcessColumns) -> bool {
    row.i32(p.state) == Some(WAITING)
        && row.i32(p.pending_parents) == Some(0)
        && row.is_null(p.executor_names)
}

fn assign(args: Args) -> Datum {
    let wanted = match args.i32(2) {
        Some(n) if (1..=MAX_CLAIMS).contains(&n) => n as usize,
        other => bad_max_count(other).raise(),
    };
    let colony = check_name(args.text(0), "colony");
    let executor_name = check_name(args.text(1), "executor");
    let mut out = Materialized::new(args);
    let mut session = Session::open(c"assign()");
    let schema = session.schema.clone();
    let outcome = claim_for(
        &mut session,
        colony,
        executor_name,
        wanted,
        false,
        &mut |row| {
            let mut values: Vec<Datum> = schema
                .process_type_map
                .iter()
                .map(|&c| row.values[c])
                .collect();
            let mut nulls: Vec<bool> = schema
                .process_type_map
                .iter()
                .map(|&c| row.nulls[c])
                .collect();
            out.push(&mut values, &mut nulls);
        },
    );
    session.close();
    if let Err(e) = outcome {
        e.raise();
    }
    out.finish()
}

fn bad_max_count(got: Option<i32>) -> ExtError {
    ExtError::InvalidValue(format!(
        "max_count must be between 1 and {MAX_CLAIMS} (got {})",
        got.map_or("NULL".to_owned(), |n| n.to_string())
    ))
}

/// `assign_batch(colonies text[], executors text[], max_counts integer[])`: what a coordinator
/// replica sends when several long-polls want work at once — one call, one snapshot per
/// request, one commit, and in strict colonies one hold of the (colony, type) lock for all of
/// them. Requests are served in array order. Returns, per claimed process, (request, process)
/// with request = 1-based array index, and per request that could not be served
/// (request, NULL, sqlstate, message) — one unknown executor does not sink the others.
fn assign_batch(args: Args) -> Datum {
    let colonies = crate::fcall::text_array(args.datum(0), "colonies");
    let executors = crate::fcall::text_array(args.datum(1), "executors");
    let max_counts = crate::fcall::int4_array(args.datum(2), "max_counts");
    if colonies.len() != executors.len() || colonies.len() != max_counts.len() {
        ExtError::InvalidValue(
            "colonies, executors and max_counts must have the same length".into(),
        )
        .raise();
    }
    let mut out = Materialized::new(args);
    let mut session = Session::open(c"assign_batch()");
    let schema = session.schema.clone();
    for (i, ((colony, executor), max)) in
        colonies.iter().zip(&executors).zip(&max_counts).enumerate()
    {
        let request = Datum::from(i as i32 + 1);
        let outcome = match (colony, executor, max) {
            (_, _, Some(n)) if !(1..=MAX_CLAIMS).contains(n) => Err(bad_max_count(Some(*n))),
            (_, _, None) => Err(bad_max_count(None)),
            (Some(colony), Some(executor), Some(n)) => claim_for(
                &mut session,
                colony,
                executor,
                *n as usize,
                true,
                &mut |row| {
                    let process = schema.process_datum(row);
                    out.push(
                        &mut [request, process, Datum::from(0), Datum::from(0)],
                        &mut [false, false, true, true],
                    );
                },
            ),
            (None, _, _) => Err(ExtError::NullArgument("colony")),
            (_, None, _) => Err(ExtError::NullArgument("executor")),
        };
        if let Err(e) = outcome {
            let mut values = [
                request,
                Datum::from(0),
                table::text_datum(e.sqlstate_code()),
                table::text_datum(&e.to_string()),
            ];
            out.push(&mut values, &mut [false, true, false, false]);
        }
    }
    session.close();
    out.finish()
}

/// Claims up to `wanted` processes for one executor and hands each new row to `claimed`, in
/// queue order. A request that cannot be served (bad name, unknown colony or executor) is an
/// Err; anything else that goes wrong raises. With `leased` (a coordinator's claim: its answer
/// crosses a network the database cannot see), each claim carries a lease, `lease_until` =
/// the claim's time + the colony's `claim_lease`, in the same row update: the executor's
/// close, fail, log or heartbeat acknowledges it, and reap() gives back a claim whose lease
/// ran out (docs/RELIABILITY.md, defect 2). Without (SQL-direct assign()), `lease_until` is
/// NULL.
fn claim_for(
    session: &mut Session,
    colony: &str,
    executor_name: &str,
    wanted: usize,
    leased: bool,
    claimed_row: &mut dyn FnMut(&Row),
) -> Result<(), ExtError> {
    let colony = members::valid_name(Some(colony), "colony")?;
    let executor_name = members::valid_name(Some(executor_name), "executor")?;
    let schema = session.schema.clone();
    // Who and where, read with the statement's snapshot: exact for this call.
    // SAFETY: a statement always has an active snapshot while it runs a function.
    let statement_snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    // Only as the executor this session may act as (src/identity.rs).
    let required_token = crate::identity::acting_as(colony, executor_name)?;
    let me = members::lookup_executor(session, colony, executor_name, statement_snapshot)?;
    me.check_token(required_token.as_deref(), colony, executor_name)?;
    let state = members::lookup_colony(session, colony, statement_snapshot)?;
    members::touch(session, &me);
    if state.paused {
        // Empty is the normal "nothing for you now" answer, also while paused.
        return Ok(());
    }
    if state.strict {
        crate::strict::lock(colony, &me.executor_type);
    }
    let cursors = !state.strict;
    let mut arms = Vec::with_capacity(3);
    if let Some(location) = &me.location {
        arms.push(Arm::new(
            Range::new(colony, &me.executor_type, Some(location)),
            schema.located_idx,
            cursors,
        ));
        // Processes that prefer this location and still wait for an executor here.
        arms.push(Arm::new(
            Range::preferred(colony, &me.executor_type, location),
            schema.preferred_idx,
            cursors,
        ));
    }
    arms.push(Arm::new(
        Range::new(colony, &me.executor_type, None),
        schema.anywhere_idx,
        cursors,
    ));
    // Taken after the epochs were read (cursor.rs) and after the strict lock.
    let snapshot = table::fresh_snapshot();
    let mut named = if targeted_work_may_exist(session, executor_name, snapshot) {
        lock_targeted(
            colony,
            &me.executor_type,
            me.location.as_deref(),
            executor_name,
            wanted,
        )
    } else {
        Vec::new()
    }
    .into_iter()
    .peekable();

    let p = schema.p;
    let mut claimed = 0;
    let mut locked_snapshot = None;
    while claimed < wanted {
        // The smallest next position among the arms and the targeted candidates.
        let mut best: Option<(Position, Option<usize>)> = named.peek().map(|c| (c.position, None));
        for (i, arm) in arms.iter_mut().enumerate() {
            if let Some(position) = arm.peek(session, snapshot)
                && best.is_none_or(|(b, _)| position < b)
            {
                best = Some((position, Some(i)));
            }
        }
        let Some((position, from)) = best else { break };
        let (tid, mut row) = match from {
            Some(i) => {
                let (_, tid, row) = arms[i].peeked.take().expect("peeked above");
                (tid, row)
            }
            None => {
                let id = named.next().expect("peeked above").id;
                // Our lock keeps it as the statement that locked it saw it: a snapshot taken
                // after that statement reads exactly that version.
                let s = *locked_snapshot.get_or_insert_with(table::fresh_snapshot);
                let index = session.index(schema.processes_pkey);
                let keys = ScanKeys::new().int8_eq(index, id);
                match session.fetch(
                    session.processes,
                    &schema.processes,
                    schema.processes_pkey,
                    keys,
                    s,
                ) {
                    Some((tid, row))
                        if row.i32(p.state) == Some(WAITING)
                            && row.i32(p.pending_parents) == Some(0) =>
                    {
                        (tid, row)
                    }
                    _ => continue,
                }
            }
        };
        let started = table::clock();
        row.set(p.state, Some(Datum::from(RUNNING)));
        row.set(p.assigned_executor, Some(table::text_datum(executor_name)));
        // The moment of the claim (clock, not transaction start): in strict mode it orders claims.
        row.set(p.started_at, Some(Datum::from(started)));
        let deadline = row
            .i32(p.max_exec_time)
            .map(|s| Datum::from(started + i64::from(s) * MICROS_PER_SECOND));
        row.set(p.exec_deadline, deadline);
        let lease = leased.then(|| Datum::from(started.saturating_add(state.claim_lease)));
        row.set(p.lease_until, lease);
        // Scanned rows without waiting: a row another session holds (or took since the
        // snapshot) is theirs. Targeted rows are ours already (heap_update only sees its own
        // transaction's lock as no obstacle when it is allowed to wait).
        let heap = session.processes;
        let changed = [
            p.state,
            p.assigned_executor,
            p.started_at,
            p.exec_deadline,
            p.lease_until,
        ];
        let Write::Done = session.update(
            heap,
            &schema.processes,
            tid,
            &mut row,
            &changed,
            from.is_none(),
        ) else {
            continue;
        };
        if let Some(i) = from {
            arms[i].last = Some(position);
            cursor::claimed(&arms[i].range, position);
        }
        claimed_row(&row);
        claimed += 1;
    }
    if let Some(s) = locked_snapshot {
        table::release_snapshot(s);
    }
    for arm in &mut arms {
        arm.end();
        if cursors {
            cursor::advance(&arm.range, arm.epoch, arm.last, arm.exhausted);
        }
    }
    table::release_snapshot(snapshot);
    Ok(())
}

/// Whether `processes_targeted_idx` has any entry naming this executor: one bitmap probe of the
/// GIN index. Entries of processes claimed since (not yet vacuumed) also count, which only
/// costs a query that then finds nothing.
fn targeted_work_may_exist(
    session: &mut Session,
    executor: &str,
    snapshot: pg_sys::Snapshot,
) -> bool {
    let index = session.index(session.schema.targeted_idx);
    // SAFETY: a bitmap scan of an open GIN index with one `@>` key, as the executor builds it.
    unsafe {
        let mut element = table::text_datum(executor);
        let array = pg_sys::construct_array(
            &mut element,
            1,
            pg_sys::TEXTOID,
            -1,
            false,
            pg_sys::TYPALIGN_INT as i8,
        );
        let mut key = pg_sys::ScanKeyData::default();
        pg_sys::ScanKeyEntryInitialize(
            &mut key,
            0,
            1,
            2, // GinContainsStrategy: array @> array
            pg_sys::InvalidOid,
            *(*index).rd_indcollation,
            pg_sys::regproc::from(pg_sys::F_ARRAYCONTAINS),
            Datum::from(array),
        );
        let scan = pg_sys::index_beginscan_bitmap(index, snapshot, 1);
        pg_sys::index_rescan(scan, &mut key, 1, std::ptr::null_mut(), 0);
        let bitmap = pg_sys::tbm_create(64 * 1024, std::ptr::null_mut());
        let found = pg_sys::index_getbitmap(scan, bitmap);
        pg_sys::index_endscan(scan);
        pg_sys::tbm_free(bitmap);
        found > 0
    }
}

/// The targeted arm: up to `wanted` processes that name this executor, locked, in queue order.
/// One SQL statement (GIN scans return unordered bitmaps, so the executor's sort is the right
/// tool here), run under a pinned search path.
fn lock_targeted(
    colony: &str,
    executor_type: &str,
    location: Option<&str>,
    executor: &str,
    wanted: usize,
) -> Vec<Targeted> {
    crate::spi::pinned(|| {
        Spi::connect_mut(|client| {
            let rows = client.update(
                include_str!("queries/lock_targeted.sql"),
                None,
                &[
                    executor.into(),
                    colony.into(),
                    executor_type.into(),
                    location.into(),
                    (wanted as i32).into(),
                ],
            )?;
            rows.map(|row| {
                let neg_priority = row.get::<i32>(1)?.expect("priority");
                let id = row.get::<i64>(2)?.expect("id");
                Ok(Targeted {
                    position: (neg_priority, id),
                    id,
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
    })
    .unwrap_or_else(|e| ExtError::Internal(format!("targeted claim failed: {e}")).raise())
}
