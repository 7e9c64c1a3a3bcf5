//! submit(), submit_many() and the insert half of submit_workflow(): specs are checked and parsed
//! once (spec.rs), inserted row by row below the SQL executor, and their keys notified at
//! commit (one count per key per transaction, notify.rs).

use crate::cursor::{self, Range};
use crate::error::ExtError;
use crate::fcall::{Args, Materialized, sql_function};
use crate::finish::MAX_DOCUMENT_BYTES;
use crate::members::{self, check_name};
use crate::spec::Spec;
use crate::table::{self, MICROS_PER_SECOND, Row, Session, WAITING};
use pgrx::pg_sys::{self, Datum};
use serde_json::value::RawValue;
use std::collections::HashMap;

/// Most specs in one call.
pub const MAX_SPECS: usize = 100_000;

sql_function!(colony_assign_submit, pg_finfo_colony_assign_submit, submit);
sql_function!(
    colony_assign_submit_many,
    pg_finfo_colony_assign_submit_many,
    submit_many
);
sql_function!(
    colony_assign_check_specs,
    pg_finfo_colony_assign_check_specs,
    check_specs_sql
);
sql_function!(
    colony_assign_insert_specs,
    pg_finfo_colony_assign_insert_specs,
    insert_specs_sql
);

fn submit(args: Args) -> Datum {
    let colony = check_name(args.text(0), "colony");
    let spec = args.datum(1);
    let key = args.text(2);
    let text = spec.map(crate::json::jsonb_text);
    let checked = match (spec, &text) {
        (Some(d), Some(text)) => {
            check_document_size(d, "").and_then(|()| Spec::parse(text, colony, false))
        }
        _ => Err("a spec must be a JSON object (got NULL)".to_owned()),
    };
    let spec_row = checked.unwrap_or_else(|problem| ExtError::InvalidValue(problem).raise());
    let mut session = Session::open(c"submit()");
    require_colony(&mut session, colony);
    let specs = [(spec_row, spec.expect("checked above"))];
    let ids = idempotent(
        &mut session,
        colony,
        key,
        text.as_deref().unwrap_or_default(),
        &specs,
    );
    session.close();
    Datum::from(ids[0])
}

fn submit_many(args: Args) -> Datum {
    let colony = check_name(args.text(0), "colony");
    let (specs, text) = check_specs(colony, args.datum(1), false);
    let key = args.text(2);
    let mut out = Materialized::new(args);
    let mut session = Session::open(c"submit_many()");
    require_colony(&mut session, colony);
    for id in idempotent(&mut session, colony, key, &text, &specs) {
        out.push(&mut [Datum::from(id)], &mut [false]);
    }
    session.close();
    out.finish()
}

/// Inserts `specs`, unless a committed earlier call with the same idempotency key did
/// (idempotency.rs): then its ids, and nothing is inserted or notified again.
fn idempotent(
    session: &mut Session,
    colony: &str,
    key: Option<&str>,
    fingerprint_text: &str,
    specs: &[(Spec, Datum)],
) -> Vec<i64> {
    let Some(key) = key else {
        return insert(session, colony, specs, None, None);
    };
    match crate::idempotency::claim(colony, key, fingerprint_text) {
        crate::idempotency::Claim::Done(ids) => ids,
        crate::idempotency::Claim::New => {
            let ids = insert(session, colony, specs, None, None);
            crate::idempotency::record(colony, key, &ids);
            ids
        }
    }
}

/// _check_specs(colony text, specs jsonb, single boolean, in_workflow boolean) → void: what
/// submit_workflow() checks before it reads the graph.
fn check_specs_sql(args: Args) -> Datum {
    let colony = check_name(args.text(0), "colony");
    let _ = check_specs(colony, args.datum(1), args.bool(3).unwrap_or(false));
    args.return_null()
}

/// _insert_specs(colony text, specs jsonb, workflow_id bigint, pending integer[]) → bigint[]:
/// the workflow's nodes, inserted in input order; `pending` is each node's count of parents.
fn insert_specs_sql(args: Args) -> Datum {
    let colony = check_name(args.text(0), "colony");
    let (specs, _) = check_specs(colony, args.datum(1), true);
    let workflow_id = args.i64(2);
    let pending: Option<Vec<i32>> = args.datum(3).map(|d| {
        crate::fcall::int4_array(Some(d), "pending")
            .into_iter()
            .map(|n| n.unwrap_or(0))
            .collect()
    });
    let mut session = Session::open(c"submit_workflow()");
    let ids = insert(
        &mut session,
        colony,
        &specs,
        workflow_id,
        pending.as_deref(),
    );
    session.close();
    // SAFETY: a one-dimensional bigint array of the new ids.
    unsafe {
        let mut datums: Vec<Datum> = ids.iter().map(|id| Datum::from(*id)).collect();
        Datum::from(pg_sys::construct_array(
            datums.as_mut_ptr(),
            datums.len() as i32,
            pg_sys::INT8OID,
            8,
            true,
            pg_sys::TYPALIGN_DOUBLE as i8,
        ))
    }
}

/// The colony exists and this session may submit into it: any executor of the colony may, as
/// over HTTP, and an admin token that reaches it; another colony looks like an unknown one.
fn require_colony(session: &mut Session, colony: &str) {
    // SAFETY: a statement always has an active snapshot while it runs a function.
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    let visible = crate::identity::may_see(colony).unwrap_or_else(|e| e.raise());
    if !visible {
        ExtError::NotFound(format!("unknown colony {}", members::quoted(colony))).raise();
    }
    members::colony(session, colony, snapshot);
}

/// 54000 for a spec over the size limit (uncompressed, as stored before TOAST).
fn check_document_size(spec: Datum, prefix: &str) -> Result<(), String> {
    // SAFETY: a jsonb Datum; its detoasted size is what a spec weighs.
    let size = unsafe { pgrx::varlena::varsize_any(pg_sys::pg_detoast_datum(spec.cast_mut_ptr())) };
    if size > MAX_DOCUMENT_BYTES {
        ExtError::TooLarge(format!(
            "{prefix}spec is {size} bytes, at most {MAX_DOCUMENT_BYTES}"
        ))
        .raise();
    }
    Ok(())
}

/// Checks a JSON array of specs (22023 / 54000 naming the first bad one, `spec[i]: `) and
/// returns each parsed, with its own jsonb, and the array's text.
fn check_specs(
    colony: &str,
    specs: Option<Datum>,
    in_workflow: bool,
) -> (Vec<(Spec, Datum)>, String) {
    let Some(specs) = specs else {
        ExtError::InvalidValue("specs must be a JSON array of specs (got NULL)".into()).raise()
    };
    let text = crate::json::jsonb_text(specs);
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(&text) else {
        let shown = if text.chars().count() > 60 {
            format!("{}...", text.chars().take(57).collect::<String>())
        } else {
            text.clone()
        };
        ExtError::InvalidValue(format!("specs must be a JSON array of specs (got {shown})")).raise()
    };
    if items.len() > MAX_SPECS {
        ExtError::TooLarge(format!(
            "too many specs in one call: {}, at most {MAX_SPECS}",
            items.len()
        ))
        .raise();
    }
    let elements = array_elements(specs);
    let mut out = Vec::with_capacity(items.len());
    for (i, (raw, element)) in items.iter().zip(elements).enumerate() {
        let prefix = format!("spec[{i}]: ");
        let _ = check_document_size(element, &prefix);
        match Spec::parse(raw.get(), colony, in_workflow) {
            Ok(spec) => out.push((spec, element)),
            Err(problem) => ExtError::InvalidValue(format!("{prefix}{problem}")).raise(),
        }
    }
    (out, text)
}

/// Each element of a jsonb array as a jsonb Datum of its own (binary copies, no reparse).
fn array_elements(array: Datum) -> Vec<Datum> {
    // SAFETY: a jsonb Datum whose top level is an array (checked by the caller's parse).
    unsafe {
        let jb = pg_sys::pg_detoast_datum(array.cast_mut_ptr()).cast::<pg_sys::Jsonb>();
        let root = &raw mut (*jb).root;
        let count = (*root).header & pg_sys::JB_CMASK;
        (0..count)
            .map(|i| {
                let value = pg_sys::getIthJsonbValueFromContainer(root, i);
                Datum::from(pg_sys::JsonbValueToJsonb(value))
            })
            .collect()
    }
}

/// A notification key of new processes: (executor type, location, executor names, whether the
/// location is a preferred one they wait for).
type WakeKey<'a> = (&'a str, Option<&'a str>, Option<&'a [String]>, bool);

/// Inserts checked specs in input order and notifies the keys of those assignable at once.
/// Returns the ids (increasing in input order).
fn insert(
    session: &mut Session,
    colony: &str,
    specs: &[(Spec, Datum)],
    workflow_id: Option<i64>,
    pending: Option<&[i32]>,
) -> Vec<i64> {
    let schema = session.schema.clone();
    let heap = session.processes;
    let now = table::now();
    let colony_datum = table::text_datum(colony);
    let mut ids = Vec::with_capacity(specs.len());
    // (type, location, names) → how many became assignable, and the first queue position.
    let mut keys: HashMap<WakeKey, (u64, cursor::Position)> = HashMap::new();
    for (i, (spec, document)) in specs.iter().enumerate() {
        // SAFETY: nextval on our identity sequence (its permission check passes for the owner).
        let id: i64 = unsafe {
            pgrx::direct_function_call(
                pg_sys::nextval_oid,
                &[Some(Datum::from(schema.id_sequence))],
            )
        }
        .expect("nextval returns a value");
        let waiting_on = pending.and_then(|p| p.get(i).copied()).unwrap_or(0);
        let mut row = insert_row(
            &schema,
            id,
            colony_datum,
            spec,
            *document,
            now,
            workflow_id,
            waiting_on,
        );
        session.insert(heap, &schema.processes, &mut row);
        ids.push(id);
        if waiting_on == 0 {
            // A process waiting for its preferred location is announced on that location's key
            // (only executors there can take it yet); the release pass announces it to all.
            let (location, preferred) = match spec.locality() {
                Some((preferred, _)) => {
                    crate::relay::locality_at_commit();
                    (Some(preferred), true)
                }
                None => (spec.location.as_deref(), false),
            };
            let key = (
                spec.executor_type.as_str(),
                location,
                spec.executor_names.as_deref(),
                preferred,
            );
            let position = (-spec.priority, id);
            keys.entry(key)
                .and_modify(|(n, first)| {
                    *n += 1;
                    *first = (*first).min(position);
                })
                .or_insert((1, position));
        }
    }
    // SAFETY: a statement always has an active snapshot while it runs a function.
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    for ((executor_type, location, names, preferred), (n, first)) in keys {
        match names {
            None => {
                let range = match location {
                    Some(l) if preferred => Range::preferred(colony, executor_type, l),
                    _ => Range::new(colony, executor_type, location),
                };
                cursor::submitted(&range, first);
                crate::notify::wake(colony, executor_type, location, None, n);
            }
            Some(names) => {
                // Only executors that could take the work are woken (as _wake_group does).
                let able: Vec<&str> = names
                    .iter()
                    .filter(|name| {
                        members::find_executor(session, colony, name, snapshot).is_some_and(|e| {
                            e.executor_type == executor_type
                                && location.is_none_or(|l| e.location.as_deref() == Some(l))
                        })
                    })
                    .map(String::as_str)
                    .collect();
                crate::notify::wake(colony, executor_type, location, Some(&able), n);
            }
        }
    }
    ids
}

/// The new row of processes for a spec.
#[allow(clippy::too_many_arguments)]
fn insert_row(
    schema: &table::Schema,
    id: i64,
    colony: Datum,
    spec: &Spec,
    document: Datum,
    now: i64,
    workflow_id: Option<i64>,
    pending_parents: i32,
) -> Row {
    let p = schema.p;
    let n = schema.processes.natts;
    let mut row = Row {
        values: vec![Datum::from(0); n],
        nulls: vec![true; n],
    };
    let text = |s: &Option<String>| s.as_deref().map(table::text_datum);
    row.set(p.id, Some(Datum::from(id)));
    row.set(p.colony, Some(colony));
    row.set(p.state, Some(Datum::from(WAITING)));
    row.set(
        p.executor_type,
        Some(table::text_datum(&spec.executor_type)),
    );
    row.set(p.location, text(&spec.location));
    row.set(
        p.executor_names,
        spec.executor_names.as_deref().map(text_array),
    );
    row.set(p.preferred_location, text(&spec.preferred_location));
    // The wait that applies (the default when the spec names a preferred location but no wait).
    row.set(
        p.locality_wait,
        spec.locality()
            .map(|(_, wait)| wait)
            .or(spec.locality_wait)
            .map(Datum::from),
    );
    // A workflow child starts its wait when its last parent releases it (_release_children).
    row.set(
        p.locality_until,
        spec.locality()
            .filter(|_| pending_parents == 0)
            .map(|(_, wait)| Datum::from(now + i64::from(wait) * MICROS_PER_SECOND)),
    );
    row.set(p.priority, Some(Datum::from(spec.priority)));
    row.set(p.funcname, Some(table::text_datum(&spec.funcname)));
    row.set(p.label, text(&spec.label));
    row.set(p.nodename, text(&spec.nodename));
    row.set(p.max_wait_time, spec.max_wait_time.map(Datum::from));
    row.set(p.max_exec_time, spec.max_exec_time.map(Datum::from));
    row.set(p.max_retries, Some(Datum::from(spec.max_retries)));
    row.set(p.spec, Some(document));
    row.set(p.retries, Some(Datum::from(0i32)));
    row.set(p.submitted_at, Some(Datum::from(now)));
    row.set(
        p.wait_deadline,
        spec.max_wait_time
            .map(|s| Datum::from(now + i64::from(s) * MICROS_PER_SECOND)),
    );
    row.set(p.workflow_id, workflow_id.map(Datum::from));
    row.set(p.pending_parents, Some(Datum::from(pending_parents)));
    row
}

fn text_array(names: &[String]) -> Datum {
    // SAFETY: a one-dimensional text array of fresh text Datums.
    unsafe {
        let mut datums: Vec<Datum> = names.iter().map(|n| table::text_datum(n)).collect();
        Datum::from(pg_sys::construct_array(
            datums.as_mut_ptr(),
            datums.len() as i32,
            pg_sys::TEXTOID,
            -1,
            false,
            pg_sys::TYPALIGN_INT as i8,
        ))
    }
}
