//! Who a session acts as (DESIGN.md, Security): `login(token)` binds the session to the
//! executor or admin that owns the token, until `logout()` or the end of the session.
//!
//! Two kinds of callers:
//! - **trusted roles** — members of `colony_assign_coordinator` or `colony_assign_admin` (and
//!   superusers) — act for anyone: the coordinator authenticates executors by bearer token over
//!   HTTP and acts for them; admins administer. Role membership is PostgreSQL's own check on the
//!   session's role (the outer user: a SECURITY DEFINER function runs as its owner).
//! - **everyone else** (roles granted `colony_assign_executor` / `_submitter`) acts only as what
//!   it logged in as: an executor may call the executor entry points (assign, close, fail,
//!   heartbeat, log, ...) for itself only, and reach only its colony's processes, workflows, logs
//!   and stats; an admin token limited to some colonies reaches only those. Outside its scope a
//!   process, workflow or colony looks exactly like one that does not exist (P0002), so ids of
//!   other colonies are not revealed. A session that has not logged in gets 42501 with a hint.
//!
//! The login keeps the token's hash: an executor removed (and perhaps re-added under the same
//! name with a new token) no longer matches, so an old session cannot act as the new one.

use crate::error::ExtError;
use crate::members::quoted;
use pgrx::pg_sys;
use std::cell::RefCell;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Executor {
        colony: String,
        name: String,
        token_hash: Vec<u8>,
    },
    Admin {
        name: String,
        /// None = every colony.
        colonies: Option<Vec<String>>,
        token_hash: Vec<u8>,
    },
}

thread_local! {
    static LOGIN: RefCell<Option<Identity>> = const { RefCell::new(None) };
    /// (outer user, trusted) for the last role asked about.
    static TRUSTED: RefCell<Option<(pg_sys::Oid, bool)>> = const { RefCell::new(None) };
}

pub fn set(identity: Option<Identity>) {
    LOGIN.with_borrow_mut(|login| *login = identity);
}

pub fn current() -> Option<Identity> {
    LOGIN.with_borrow(Clone::clone)
}

/// Whether the session's role may act for anyone (coordinator, admin, superuser).
pub fn trusted() -> bool {
    // SAFETY: plain reads of the session's role and catalog lookups by name.
    let outer = unsafe { pg_sys::GetOuterUserId() };
    if let Some((role, trusted)) = TRUSTED.with_borrow(|t| *t)
        && role == outer
    {
        return trusted;
    }
    let member = |name: &std::ffi::CStr| unsafe {
        let role = pg_sys::get_role_oid(name.as_ptr(), true);
        role != pg_sys::InvalidOid && pg_sys::has_privs_of_role(outer, role)
    };
    let trusted = member(c"colony_assign_coordinator") || member(c"colony_assign_admin");
    TRUSTED.with_borrow_mut(|t| *t = Some((outer, trusted)));
    trusted
}

/// Role memberships can change within a session (GRANT/REVOKE): forget the cached answer at
/// each transaction's end, so the next transaction asks PostgreSQL again.
pub fn at_transaction_end() {
    TRUSTED.with_borrow_mut(|t| *t = None);
}

fn not_logged_in() -> ExtError {
    ExtError::NotAllowed(
        "this session has not logged in: call colony_assign.login(token) with an executor's or admin's token first"
            .into(),
    )
}

/// For the executor entry points: the session may act as `executor` of `colony`. Returns the
/// token hash the login holds (the caller compares it with the executor's row), or None for a
/// trusted role.
pub fn acting_as(colony: &str, executor: &str) -> Result<Option<Vec<u8>>, ExtError> {
    if trusted() {
        return Ok(None);
    }
    match current() {
        Some(Identity::Executor {
            colony: c,
            name,
            token_hash,
        }) if c == colony && name == executor => Ok(Some(token_hash)),
        Some(Identity::Admin { .. }) => Err(ExtError::NotAllowed(format!(
            "an admin token cannot act as executor {} of colony {}",
            quoted(executor),
            quoted(colony)
        ))),
        Some(Identity::Executor { .. }) => Err(ExtError::NotAllowed(format!(
            "this session is logged in as another executor, not {} of colony {}",
            quoted(executor),
            quoted(colony)
        ))),
        None => Err(not_logged_in()),
    }
}

/// The colony an untrusted session acts in as an executor; None for trusted roles. Admin
/// logins do not act as executors, and a session must have logged in.
pub fn session_colony() -> Result<Option<String>, ExtError> {
    if trusted() {
        return Ok(None);
    }
    match current() {
        Some(Identity::Executor { colony, .. }) => Ok(Some(colony)),
        Some(Identity::Admin { .. }) => Err(ExtError::NotAllowed(
            "an admin token cannot act as an executor".into(),
        )),
        None => Err(not_logged_in()),
    }
}

/// For readers and submitters: Ok(true) when the session may see `colony`'s objects, Ok(false)
/// when they must look as if they did not exist, Err when the session has not logged in.
pub fn may_see(colony: &str) -> Result<bool, ExtError> {
    if trusted() {
        return Ok(true);
    }
    match current() {
        Some(Identity::Executor { colony: c, .. }) => Ok(c == colony),
        Some(Identity::Admin { colonies: None, .. }) => Ok(true),
        Some(Identity::Admin {
            colonies: Some(list),
            ..
        }) => Ok(list.iter().any(|c| c == colony)),
        None => Err(not_logged_in()),
    }
}

/// SQL: `_may_see(colony)` for the PL/pgSQL functions (process, logs, workflow, cancel, stats,
/// submit_workflow, channels). Raises 42501 when the session has not logged in.
#[pgrx::pg_extern(volatile, parallel_unsafe)]
fn _may_see(colony: Option<&str>) -> bool {
    match colony {
        None => false,
        Some(colony) => may_see(colony).unwrap_or_else(|e| e.raise()),
    }
}

/// SQL: `_acting_as(colony, executor)` for the PL/pgSQL executor functions (heartbeat, log).
/// Raises 42501 unless the session may act as that executor, and P0002 when the login's token
/// no longer belongs to it (removed, or re-added with a new token).
#[pgrx::pg_extern(volatile, parallel_unsafe)]
fn _acting_as(colony: Option<&str>, executor: Option<&str>, token_hash: Option<&[u8]>) {
    // NULL names are the caller's mistake (22004), not an internal error.
    let colony = crate::members::check_name(colony, "colony");
    let executor = crate::members::check_name(executor, "executor");
    match acting_as(colony, executor) {
        Ok(None) => {}
        Ok(Some(hash)) if token_hash == Some(hash.as_slice()) => {}
        Ok(Some(_)) => ExtError::NotAllowed(format!(
            "the token this session logged in with no longer belongs to executor {} of colony {}",
            quoted(executor),
            quoted(colony)
        ))
        .raise(),
        Err(e) => e.raise(),
    }
}

/// SQL: `_trusted()`: whether the session's role acts for anyone.
#[pgrx::pg_extern(volatile, parallel_unsafe)]
fn _trusted() -> bool {
    trusted()
}

/// SQL: `_session_colony()`: the colony of the executor this (untrusted) session logged in as;
/// NULL for trusted roles. Raises 42501 for admin logins (they do not act as executors) and
/// sessions that have not logged in.
#[pgrx::pg_extern(volatile, parallel_unsafe)]
fn _session_colony() -> Option<String> {
    session_colony().unwrap_or_else(|e| e.raise())
}

crate::fcall::sql_function!(colony_assign_login, pg_finfo_colony_assign_login, login);
crate::fcall::sql_function!(colony_assign_logout, pg_finfo_colony_assign_logout, logout);

/// `login(token) → (kind, colony, name)`: binds the session to the token's executor or admin.
/// An unknown token is 28000 and leaves the session as it was.
fn login(args: crate::fcall::Args) -> pg_sys::Datum {
    use pgrx::prelude::*;
    use sha2::{Digest, Sha256};
    let token = crate::error::required(args.text(0), "token");
    let hash = Sha256::digest(token.as_bytes()).to_vec();
    let found = crate::spi::pinned(|| {
        Spi::connect(|client| {
            let rows = client.select(
                include_str!("queries/login.sql"),
                Some(1),
                &[hash.as_slice().into()],
            )?;
            rows.map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?,
                    row.get::<String>(3)?.unwrap_or_default(),
                    row.get::<Vec<String>>(4)?,
                ))
            })
            .next()
            .transpose()
        })
    })
    .unwrap_or_else(|e: pgrx::spi::Error| {
        ExtError::Internal(format!("login lookup failed: {e}")).raise()
    });
    let Some((kind, colony, name, colonies)) = found else {
        ExtError::NotAuthorized("unknown token".into()).raise()
    };
    let identity = if kind == "admin" {
        Identity::Admin {
            name: name.clone(),
            colonies,
            token_hash: hash,
        }
    } else {
        Identity::Executor {
            colony: colony.clone().unwrap_or_default(),
            name: name.clone(),
            token_hash: hash,
        }
    };
    set(Some(identity));
    crate::fcall::record(
        args,
        &[Some(kind.as_str()), colony.as_deref(), Some(name.as_str())],
    )
}

/// `logout()`: the session acts as nobody again.
fn logout(args: crate::fcall::Args) -> pg_sys::Datum {
    set(None);
    args.return_null()
}
