//! Colonies and executors as the hot path sees them: looked up by primary key with the call's
//! snapshot (exact: a removed executor, a pause or a switch to strict mode is seen by the next
//! call that starts after its commit), and an executor's liveness refreshed at most once a
//! second, as `_touch` does in SQL.

use crate::error::ExtError;
use crate::table::{MICROS_PER_SECOND, Row, ScanKeys, Session, now};
use pgrx::datum::{FromDatum, Interval};
use pgrx::pg_sys::{self, Datum};

/// Longest name (colony, executor, executor type, location), in bytes.
pub const MAX_NAME: usize = 255;

/// The checks `_check_name` makes in SQL, with the same messages and SQLSTATEs.
pub fn valid_name<'a>(value: Option<&'a str>, what: &'static str) -> Result<&'a str, ExtError> {
    match value {
        None => Err(ExtError::NullArgument(what)),
        Some("") => Err(ExtError::InvalidValue(format!("{what} must not be empty"))),
        Some(v) if v.len() > MAX_NAME => Err(ExtError::InvalidValue(format!(
            "{what} is too long: {} bytes, at most {MAX_NAME}",
            v.len()
        ))),
        Some(v) => Ok(v),
    }
}

/// [`valid_name`], raising.
pub fn check_name<'a>(value: Option<&'a str>, what: &'static str) -> &'a str {
    valid_name(value, what).unwrap_or_else(|e| e.raise())
}

/// A name as a JSON string, as error messages show names (`to_jsonb(name)::text` in SQL).
pub fn quoted(name: &str) -> String {
    serde_json::Value::String(name.to_owned()).to_string()
}

pub struct Colony {
    pub paused: bool,
    pub strict: bool,
    /// `claim_lease` in microseconds: how long a coordinator's claim may go unacknowledged.
    pub claim_lease: i64,
}

/// The colony, or P0002.
pub fn colony(session: &mut Session, name: &str, snapshot: pg_sys::Snapshot) -> Colony {
    lookup_colony(session, name, snapshot).unwrap_or_else(|e| e.raise())
}

/// The colony, or a P0002 error.
pub fn lookup_colony(
    session: &mut Session,
    name: &str,
    snapshot: pg_sys::Snapshot,
) -> Result<Colony, ExtError> {
    let schema = session.schema.clone();
    let heap = session.colonies();
    let index = session.index(schema.colonies_pkey);
    let keys = ScanKeys::new().text_eq(index, name);
    let Some((_, row)) =
        session.fetch(heap, &schema.colonies, schema.colonies_pkey, keys, snapshot)
    else {
        return Err(ExtError::NotFound(format!(
            "unknown colony {}",
            quoted(name)
        )));
    };
    Ok(Colony {
        paused: row.bool(schema.c.paused).unwrap_or(false),
        strict: row.bool(schema.c.strict).unwrap_or(false),
        claim_lease: row
            .datum(schema.c.claim_lease)
            // SAFETY: claim_lease is an interval column (by schema), not null here.
            .and_then(|d| unsafe { Interval::from_datum(d, false) })
            .map(|lease| i64::try_from(lease.as_micros()).unwrap_or(i64::MAX))
            .expect("colonies.claim_lease is NOT NULL"),
    })
}

pub struct Executor {
    tid: pg_sys::ItemPointerData,
    row: Row,
    pub executor_type: String,
    pub location: Option<String>,
    /// SHA-256 of its bearer token (what a login must match).
    pub token_hash: Vec<u8>,
}

impl Executor {
    /// For a session that logged in with a token (`required`: its hash; None for trusted
    /// roles): the token must still be this executor's (it may have been removed and re-added).
    pub fn check_token(
        &self,
        required: Option<&[u8]>,
        colony: &str,
        name: &str,
    ) -> Result<(), ExtError> {
        match required {
            Some(hash) if hash != self.token_hash.as_slice() => Err(ExtError::NotAllowed(format!(
                "the token this session logged in with no longer belongs to executor {} of colony {}",
                quoted(name),
                quoted(colony)
            ))),
            _ => Ok(()),
        }
    }
}

/// The executor of `colony` called `name`, or P0002 (naming the colony when it is the colony
/// that is unknown, as `_executor` does).
pub fn lookup_executor(
    session: &mut Session,
    colony: &str,
    name: &str,
    snapshot: pg_sys::Snapshot,
) -> Result<Executor, ExtError> {
    match find_executor(session, colony, name, snapshot) {
        Some(e) => Ok(e),
        None => {
            lookup_colony(session, colony, snapshot)?;
            Err(ExtError::NotFound(format!(
                "unknown executor {} in colony {}",
                quoted(name),
                quoted(colony)
            )))
        }
    }
}

/// The executor, if registered.
pub fn find_executor(
    session: &mut Session,
    colony: &str,
    name: &str,
    snapshot: pg_sys::Snapshot,
) -> Option<Executor> {
    let schema = session.schema.clone();
    let heap = session.executors();
    let index = session.index(schema.executors_pkey);
    let keys = ScanKeys::new().text_eq(index, colony).text_eq(index, name);
    let (tid, row) = session.fetch(
        heap,
        &schema.executors,
        schema.executors_pkey,
        keys,
        snapshot,
    )?;
    let e = schema.e;
    Some(Executor {
        executor_type: row.text(e.executor_type).unwrap_or_default().to_owned(),
        location: row.text(e.location).map(str::to_owned),
        // SAFETY: token_hash is a NOT NULL bytea column.
        token_hash: row
            .datum(e.token_hash)
            .map_or_else(Vec::new, |d| unsafe { crate::table::bytes(d).to_vec() }),
        tid,
        row,
    })
}

/// Refreshes the executor's `last_seen` (and clears `stale_since`) when it is more than a
/// second old. Skips when another session is doing the same right now.
pub fn touch(session: &mut Session, executor: &Executor) {
    let schema = session.schema.clone();
    let e = schema.e;
    let now = now();
    let fresh = |row: &Row| {
        row.i64(e.last_seen)
            .is_some_and(|seen| seen >= now - MICROS_PER_SECOND)
    };
    if fresh(&executor.row) {
        return;
    }
    let heap = session.executors();
    let mut row = Row {
        values: executor.row.values.clone(),
        nulls: executor.row.nulls.clone(),
    };
    row.set(e.last_seen, Some(Datum::from(now)));
    row.set(e.stale_since, None);
    // Without waiting: another session touching the same executor right now does the same.
    let _ = session.update(
        heap,
        &schema.executors,
        executor.tid,
        &mut row,
        &[e.last_seen, e.stale_since],
        false,
    );
}
