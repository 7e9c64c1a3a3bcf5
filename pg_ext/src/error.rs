//! Errors the Rust functions of the extension raise, each with an explicit SQLSTATE so callers
//! can branch on the code instead of parsing messages. (The SQL functions raise theirs with
//! `RAISE ... USING ERRCODE`; the codes are listed in docs/sql-api.md.)

use pgrx::pg_sys;
use pgrx::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum ExtError {
    /// A required argument was NULL (22004).
    #[error("{0} must not be NULL")]
    NullArgument(&'static str),
    /// An argument has an invalid value: a malformed spec, a bad name, a count out of range
    /// (22023). The message names the field and the value.
    #[error("{0}")]
    InvalidValue(String),
    /// Too large: a spec or output over its limit, too many items in one call (54000).
    #[error("{0}")]
    TooLarge(String),
    /// An unknown colony, executor, process or workflow (P0002).
    #[error("{0}")]
    NotFound(String),
    /// Not allowed: another executor's process, another colony's (42501).
    #[error("{0}")]
    NotAllowed(String),
    /// An unknown or revoked token (28000).
    #[error("{0}")]
    NotAuthorized(String),
    /// The object is not in the state the call needs: closing twice, cancelling what ended
    /// (55000).
    #[error("{0}")]
    WrongState(String),
    /// A row changed under a REPEATABLE READ or SERIALIZABLE transaction (40001), as
    /// PostgreSQL reports it for an UPDATE.
    #[error("could not serialize access due to concurrent update")]
    SerializationFailure,
    /// The extension's own invariants do not hold (its schema was altered by hand); XX000.
    #[error("colony_assign internal error: {0}")]
    Internal(String),
}

impl ExtError {
    /// The SQLSTATE as its five characters (for per-item results of batch calls).
    pub fn sqlstate_code(&self) -> &'static str {
        match self {
            ExtError::NullArgument(_) => "22004",
            ExtError::InvalidValue(_) => "22023",
            ExtError::TooLarge(_) => "54000",
            ExtError::NotFound(_) => "P0002",
            ExtError::NotAllowed(_) => "42501",
            ExtError::NotAuthorized(_) => "28000",
            ExtError::WrongState(_) => "55000",
            ExtError::SerializationFailure => "40001",
            ExtError::Internal(_) => "XX000",
        }
    }

    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            ExtError::NullArgument(_) => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ExtError::InvalidValue(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ExtError::TooLarge(_) => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            ExtError::NotFound(_) => PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            ExtError::NotAllowed(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            ExtError::NotAuthorized(_) => {
                PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION
            }
            ExtError::WrongState(_) => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            ExtError::SerializationFailure => PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            ExtError::Internal(_) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        }
    }

    /// Raises the error as a PostgreSQL ERROR; does not return.
    pub fn raise(self) -> ! {
        pg_sys::panic::ErrorReport::new(self.sqlstate(), self.to_string(), "colony_assign")
            .report(PgLogLevel::ERROR);
        unreachable!("an ERROR report returns control to PostgreSQL")
    }
}

/// Unwraps a nullable argument or raises [`ExtError::NullArgument`].
pub fn required<T>(value: Option<T>, name: &'static str) -> T {
    value.unwrap_or_else(|| ExtError::NullArgument(name).raise())
}
