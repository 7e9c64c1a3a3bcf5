//! Errors the Rust functions of the extension raise, each with an explicit SQLSTATE so callers
//! can branch on the code instead of parsing messages. (The SQL functions raise theirs with
//! `RAISE ... USING ERRCODE`; the codes are listed in docs/sql-api.md.)

use pgrx::pg_sys;
use pgrx::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum ExtError {
    /// A required argument was NULL.
    #[error("{0} must not be NULL")]
    NullArgument(&'static str),
}

impl ExtError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            ExtError::NullArgument(_) => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
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
