//! close(), fail() and close_many(): a RUNNING process ends as SUCCESS or FAILED, compare-and-set
//! on its state and assigned executor (and its colony, when given), below the SQL executor.
//!
//! Like an UPDATE in READ COMMITTED: the row is found with the statement's snapshot and
//! updated if that version is still its latest (waiting for another holder); when it changed
//! meanwhile it is read again and re-checked.
//! Why a call matched nothing is explained from the row itself, with the SQLSTATEs the SQL
//! version raised. Workflow follow-ups (releasing children, ending descendants) are rare and
//! stay in SQL (sql/workflows.sql).

use crate::error::ExtError;
use crate::error::required;
use crate::fcall::{Args, Materialized, sql_function};
use crate::identity;
use crate::members::{self, check_name};
use crate::table::{self, RUNNING, Row, ScanKeys, Session, Write};
use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Largest output or error list accepted, in bytes as stored (as `_max_document_bytes()`).
pub const MAX_DOCUMENT_BYTES: usize = 262_144;
/// Most closes in one close_many() call.
pub const MAX_CLOSES: usize = 1000;

const SUCCESS: i32 = 2;
const FAILED: i32 = 3;

sql_function!(colony_assign_close, pg_finfo_colony_assign_close, close);
sql_function!(colony_assign_fail, pg_finfo_colony_assign_fail, fail);
sql_function!(
    colony_assign_close_many,
    pg_finfo_colony_assign_close_many,
    close_many
);
sql_function!(
    colony_assign_close_batch,
    pg_finfo_colony_assign_close_batch,
    close_batch
);

fn close(args: Args) -> Datum {
    let id = required(args.i64(0), "process_id");
    let executor = check_name(args.text(1), "executor");
    let output = args.datum(2);
    check_size(output, "output is", "");
    let mut session = Session::open(c"close()");
    let outcome = finish(
        &mut session,
        id,
        executor,
        args.text(3),
        SUCCESS,
        output,
        None,
    );
    session.close();
    match outcome {
        Ok(()) => args.return_null(),
        Err(why) => why.raise(),
    }
}

fn fail(args: Args) -> Datum {
    let id = required(args.i64(0), "process_id");
    let executor = check_name(args.text(1), "executor");
    // NULL errors mean "no message": an empty list, as fail() always stored.
    let errors = args.datum(2).unwrap_or_else(empty_text_array);
    check_size(Some(errors), "errors are", "");
    let mut session = Session::open(c"fail()");
    let outcome = finish(
        &mut session,
        id,
        executor,
        args.text(3),
        FAILED,
        None,
        Some(errors),
    );
    session.close();
    match outcome {
        Ok(()) => args.return_null(),
        Err(why) => why.raise(),
    }
}

/// 54000 when a document is over the limit (measured as pg_column_size does).
fn check_size(value: Option<Datum>, what: &str, prefix: &str) {
    if let Err(e) = size_ok(value, what, prefix) {
        e.raise();
    }
}

fn size_ok(value: Option<Datum>, what: &str, prefix: &str) -> Result<(), ExtError> {
    if let Some(d) = value {
        // SAFETY: a varlena Datum (jsonb or text[]).
        let size = unsafe { pg_sys::toast_datum_size(d) };
        if size > MAX_DOCUMENT_BYTES {
            return Err(ExtError::TooLarge(format!(
                "{prefix}{what} {size} bytes, at most {MAX_DOCUMENT_BYTES}"
            )));
        }
    }
    Ok(())
}

fn empty_text_array() -> Datum {
    // SAFETY: an empty one-dimensional text array.
    Datum::from(unsafe { pg_sys::construct_empty_array(pg_sys::TEXTOID) })
}

/// Why a close matched nothing; also the per-item error text of close_many(). A process of
/// another colony is Unknown: "not yours" and "does not exist" look the same.
enum Miss {
    Unknown,
    /// Its state, and who finished it when another executor did (SUCCESS or FAILED): a retried
    /// close or fail counts as applied only when the answer names no one else (docs/protocol.md).
    NotRunning(i32, Option<String>),
    OtherExecutor,
}

/// `not running (it is SUCCESS)`, or with `, finished by "<executor>"` when another executor
/// finished it.
fn not_running(state: i32, by: Option<&str>) -> String {
    match by {
        Some(by) => format!(
            "not running (it is {}, finished by {})",
            state_name(state),
            members::quoted(by)
        ),
        None => format!("not running (it is {})", state_name(state)),
    }
}

impl Miss {
    fn short(&self) -> String {
        match self {
            Miss::Unknown => "unknown process".into(),
            Miss::NotRunning(state, by) => not_running(*state, by.as_deref()),
            Miss::OtherExecutor => "assigned to another executor".into(),
        }
    }

    fn error(&self, id: i64, executor: &str) -> ExtError {
        match self {
            Miss::Unknown => ExtError::NotFound(format!("unknown process {id}")),
            Miss::NotRunning(state, by) => ExtError::WrongState(format!(
                "process {id} is {}",
                not_running(*state, by.as_deref())
            )),
            Miss::OtherExecutor => ExtError::NotAllowed(format!(
                "process {id} is assigned to another executor, not {}",
                members::quoted(executor)
            )),
        }
    }
}

pub fn state_name(state: i32) -> &'static str {
    ["WAITING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED"]
        .get(state as usize)
        .copied()
        .unwrap_or("UNKNOWN")
}

/// Why `row` cannot be finished by `executor` (of `colony`), or None when it can.
fn miss(row: &Row, p: table::ProcessColumns, executor: &str, colony: Option<&str>) -> Option<Miss> {
    if colony.is_some_and(|c| row.text(p.colony) != Some(c)) {
        return Some(Miss::Unknown);
    }
    let state = row.i32(p.state).unwrap_or(-1);
    if state != RUNNING {
        let by = row
            .text(p.assigned_executor)
            .filter(|by| (state == SUCCESS || state == FAILED) && *by != executor);
        return Some(Miss::NotRunning(state, by.map(str::to_owned)));
    }
    (row.text(p.assigned_executor) != Some(executor)).then_some(Miss::OtherExecutor)
}

/// The colony a close by `executor` is confined to. Trusted roles (the coordinator) pass the
/// given colony through; a session logged in as an executor closes only as itself, only in its
/// colony, and only while its token is still that executor's (src/identity.rs).
fn scope(
    session: &mut Session,
    colony: Option<&str>,
    executor: &str,
) -> Result<Option<String>, ExtError> {
    let Some(own) = identity::session_colony()? else {
        return Ok(colony.map(str::to_owned));
    };
    let required = identity::acting_as(colony.unwrap_or(&own), executor)?;
    // SAFETY: a statement always has an active snapshot while it runs a function.
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    let me = members::lookup_executor(session, &own, executor, snapshot)?;
    me.check_token(required.as_deref(), &own, executor)?;
    Ok(Some(own))
}

/// Ends process `id` as `new_state` with `output` / `errors`, then runs its workflow
/// follow-ups and refreshes the executor's liveness.
fn finish(
    session: &mut Session,
    id: i64,
    executor: &str,
    colony: Option<&str>,
    new_state: i32,
    output: Option<Datum>,
    errors: Option<Datum>,
) -> Result<(), ExtError> {
    let colony = scope(session, colony, executor)?;
    let ended = end_one(
        session,
        id,
        executor,
        colony.as_deref(),
        new_state,
        output,
        errors,
    )
    .map_err(|miss| miss.error(id, executor))?;
    let colony = ended.colony.clone();
    follow_up(session, &[ended], new_state);
    touch(session, &colony, executor);
    Ok(())
}

/// What finishing a process leaves to do.
struct Ended {
    id: i64,
    colony: String,
    has_children: bool,
}

/// The compare-and-set itself: find, lock, re-check, update.
fn end_one(
    session: &mut Session,
    id: i64,
    executor: &str,
    colony: Option<&str>,
    new_state: i32,
    output: Option<Datum>,
    errors: Option<Datum>,
) -> Result<Ended, Miss> {
    let schema = session.schema.clone();
    let p = schema.p;
    let heap = session.processes;
    // SAFETY: a statement always has an active snapshot while it runs a function.
    let mut snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    let mut fresh = None;
    let result = loop {
        let index = session.index(schema.processes_pkey);
        let keys = ScanKeys::new().int8_eq(index, id);
        let Some((tid, row)) = session.fetch(
            heap,
            &schema.processes,
            schema.processes_pkey,
            keys,
            snapshot,
        ) else {
            break Err(Miss::Unknown);
        };
        if let Some(why) = miss(&row, p, executor, colony) {
            break Err(why);
        }
        let ended = Ended {
            id,
            colony: row.text(p.colony).unwrap_or_default().to_owned(),
            has_children: !row.is_null(p.children),
        };
        let mut row = row;
        row.set(p.state, Some(Datum::from(new_state)));
        row.set(p.output, output);
        row.set(p.errors, errors);
        row.set(p.ended_at, Some(Datum::from(table::now())));
        row.set(p.exec_deadline, None);
        let changed = [p.state, p.output, p.errors, p.ended_at, p.exec_deadline];
        match session.update(heap, &schema.processes, tid, &mut row, &changed, true) {
            Write::Done => break Ok(ended),
            // Changed by a transaction that committed after our snapshot: look again and
            // re-check, as READ COMMITTED does for an UPDATE.
            Write::Changed | Write::Busy => {
                if let Some(old) = fresh.take() {
                    table::release_snapshot(old);
                }
                let s = table::fresh_snapshot();
                fresh = Some(s);
                snapshot = s;
            }
        }
    };
    if let Some(s) = fresh {
        table::release_snapshot(s);
    }
    result
}

/// Workflow follow-ups in the same transaction: success may release children; failure ends
/// every waiting descendant.
fn follow_up(session: &mut Session, ended: &[Ended], new_state: i32) {
    let parents: Vec<i64> = ended
        .iter()
        .filter(|e| e.has_children)
        .map(|e| e.id)
        .collect();
    if parents.is_empty() {
        return;
    }
    let _ = session; // (the session's relations stay open; SPI opens its own)
    // The SQL below must see the updates made above.
    // SAFETY: ends this command, as the executor does between statements.
    unsafe { pg_sys::CommandCounterIncrement() };
    let query = if new_state == SUCCESS {
        include_str!("queries/release_children.sql")
    } else {
        include_str!("queries/end_descendants.sql")
    };
    crate::spi::pinned(|| {
        Spi::connect_mut(|client| client.update(query, None, &[parents.into()]).map(|_| ()))
    })
    .unwrap_or_else(|e| ExtError::Internal(format!("workflow follow-up failed: {e}")).raise());
}

/// Liveness, as every executor call refreshes it (the executor may be gone: nothing to do).
fn touch(session: &mut Session, colony: &str, executor: &str) {
    // SAFETY: a statement always has an active snapshot while it runs a function.
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    if let Some(me) = members::find_executor(session, colony, executor, snapshot) {
        members::touch(session, &me);
    }
}

fn close_many(args: Args) -> Datum {
    let executor = check_name(args.text(0), "executor");
    let closes = parse_closes(args.datum(1));
    let mut out = Materialized::new(args);
    let mut session = Session::open(c"close_many()");
    let colony = scope(&mut session, args.text(2), executor).unwrap_or_else(|e| e.raise());
    let colony = colony.as_deref();
    let mut results: Vec<(i64, Option<String>)> = Vec::with_capacity(closes.len());
    let mut ended = Vec::new();
    for (id, output) in closes {
        match end_one(&mut session, id, executor, colony, SUCCESS, output, None) {
            Ok(e) => {
                ended.push(e);
                results.push((id, None));
            }
            Err(why) => results.push((id, Some(why.short()))),
        }
    }
    follow_up(&mut session, &ended, SUCCESS);
    if let Some(first) = ended.first() {
        let colony = first.colony.clone();
        touch(&mut session, &colony, executor);
    }
    session.close();
    results.sort_by_key(|(id, _)| *id);
    for (id, error) in results {
        let mut values = [
            Datum::from(id),
            Datum::from(error.is_none()),
            error.as_deref().map_or(Datum::from(0), table::text_datum),
        ];
        let mut nulls = [false, false, error.is_none()];
        out.push(&mut values, &mut nulls);
    }
    out.finish()
}

/// `close_batch(process_ids bigint[], executors text[], outputs jsonb[], colonies text[])`:
/// closes by several executors in one call and one commit (a coordinator replica coalescing
/// concurrent close requests). One row per request: (request, sqlstate, message), with
/// request the 1-based array index and sqlstate NULL when the process was closed; a request
/// that cannot be served gets the SQLSTATE and message close() would have raised, and does
/// not sink the others.
fn close_batch(args: Args) -> Datum {
    let ids = crate::fcall::int8_array(args.datum(0), "process_ids");
    let executors = crate::fcall::text_array(args.datum(1), "executors");
    let outputs = crate::fcall::jsonb_array(args.datum(2), "outputs");
    let colonies = crate::fcall::text_array(args.datum(3), "colonies");
    let n = ids.len();
    if executors.len() != n || outputs.len() != n || colonies.len() != n {
        ExtError::InvalidValue(
            "process_ids, executors, outputs and colonies must have the same length".into(),
        )
        .raise();
    }
    let mut out = Materialized::new(args);
    let mut session = Session::open(c"close_batch()");
    let mut ended = Vec::new();
    let mut touched: Vec<(String, String)> = Vec::new();
    for i in 0..n {
        let outcome = (|| {
            let id = ids[i].ok_or(ExtError::NullArgument("process_id"))?;
            let executor = members::valid_name(executors[i].as_deref(), "executor")?;
            size_ok(outputs[i], "output is", "")?;
            let colony = scope(&mut session, colonies[i].as_deref(), executor)?;
            let e = end_one(
                &mut session,
                id,
                executor,
                colony.as_deref(),
                SUCCESS,
                outputs[i],
                None,
            )
            .map_err(|miss| miss.error(id, executor))?;
            if !touched.iter().any(|(c, x)| *c == e.colony && x == executor) {
                touched.push((e.colony.clone(), executor.to_owned()));
            }
            ended.push(e);
            Ok::<(), ExtError>(())
        })();
        let request = Datum::from(i as i32 + 1);
        match outcome {
            Ok(()) => out.push(
                &mut [request, Datum::from(0), Datum::from(0)],
                &mut [false, true, true],
            ),
            Err(e) => out.push(
                &mut [
                    request,
                    table::text_datum(e.sqlstate_code()),
                    table::text_datum(&e.to_string()),
                ],
                &mut [false, false, false],
            ),
        }
    }
    follow_up(&mut session, &ended, SUCCESS);
    for (colony, executor) in &touched {
        touch(&mut session, colony, executor);
    }
    session.close();
    out.finish()
}

/// The batch as (id, output) pairs, each id once (its first occurrence), in input order; raises
/// 22023/54000 for a malformed or oversized batch before anything is written.
fn parse_closes(closes: Option<Datum>) -> Vec<(i64, Option<Datum>)> {
    let shape = || {
        ExtError::InvalidValue(
            r#"closes must be a JSON array of {"id": ..., "output": ...}"#.into(),
        )
    };
    let Some(datum) = closes else { shape().raise() };
    // Items are read as raw JSON text, never as serde values: an output is stored exactly as it
    // was given (numbers beyond f64, any nesting PostgreSQL accepted), as close() stores it.
    let text = crate::json::jsonb_text(datum);
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(&text) else {
        shape().raise()
    };
    if items.len() > MAX_CLOSES {
        ExtError::TooLarge(format!(
            "too many closes in one call: {}, at most {MAX_CLOSES}",
            items.len()
        ))
        .raise();
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let bad = || {
            ExtError::InvalidValue(format!(
                r#"closes[{i}] must be {{"id": <integer>, "output": <optional JSON>}}"#
            ))
        };
        let Ok(fields) = serde_json::from_str::<BTreeMap<String, &RawValue>>(item.get()) else {
            bad().raise()
        };
        if fields.keys().any(|k| k != "id" && k != "output") {
            bad().raise();
        }
        let id = fields
            .get("id")
            .and_then(|raw| crate::json::exact_integer(raw.get()))
            .unwrap_or_else(|| bad().raise());
        let output = fields
            .get("output")
            .map(|raw| crate::json::text_to_jsonb(raw.get()));
        check_size(output, "output is", &format!("closes[{i}]: "));
        if seen.insert(id) {
            out.push((id, output));
        }
    }
    out
}
