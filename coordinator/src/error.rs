//! The coordinator's error types: [`Error`], what a request can fail with (how each variant
//! becomes an HTTP status lives in `http/error.rs`, the only place that decides it), and
//! [`StartupError`], why the coordinator could not start (never an HTTP answer).

use tokio_postgres::error::SqlState;

/// Plain data (no source error inside), so a batch that failed as a whole hands each of its
/// requests a clone.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Return `401 Unauthorized`: no bearer token, or one no executor or admin has.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Return `403 Forbidden`: authenticated but not allowed (an admin token on an executor's
    /// route, an executor token on an admin route).
    #[error("{0}")]
    Forbidden(String),
    /// Return `404 Not Found`.
    #[error("{0}")]
    NotFound(String),
    /// Return `405 Method Not Allowed`: the path exists, not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Return `400 Bad Request`: malformed JSON, parameters or values.
    #[error("{0}")]
    BadRequest(String),
    /// Return `413 Payload Too Large`.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Return `408 Request Timeout` (and close the connection): the request body did not
    /// arrive in full within `--body-read-timeout-ms`.
    #[error("the request body did not arrive within {} ms", .0.as_millis())]
    RequestTimeout(std::time::Duration),
    /// Return `429 Too Many Requests`: the executor already has `--max-parked-per-executor`
    /// long-polls parked on this replica.
    #[error("{0}")]
    TooManyRequests(String),
    /// Return `503 Service Unavailable`: the database is unreachable or the pool exhausted.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Return `504 Gateway Timeout`: the database call was sent and its answer never came (the
    /// connection died mid-call, or the call passed its deadline): it may or may not have been
    /// applied. Clients treat it like a lost answer (retry only what is safe to repeat), never
    /// like a 503, which promises that nothing was done.
    #[error("database call outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// Return `503 Service Unavailable`: the coordinator is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// The database refused the call: an error raised by a colony_assign SQL function (or what
    /// a batched call reported for one of its requests, the SQLSTATE and message the single
    /// call would have raised). The status follows the SQLSTATE (`http/error.rs`: invalid input
    /// 400, 28000 401, 42501 403, P0002 404, 55000/23505 409, 54000 413, others 500).
    #[error("{message}")]
    Refused { sqlstate: String, message: String },
    /// Return `500 Internal Server Error`; the message is logged, not returned.
    #[error("{0}")]
    Internal(String),
}

impl From<deadpool_postgres::PoolError> for Error {
    /// Any failure to get a pool connection is 503, retryable: the request reached no SQL
    /// function, so nothing was done. That includes a connection the server refused to open
    /// (database not accepting connections 55000, role cannot log in 28000, too many
    /// connections 53300, starting up 57P03): SQLSTATEs that, raised by a function, would be
    /// the extension's answer. The SQLSTATE stays in the message (logged).
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Error::Unavailable(format!(
                "cannot open a connection{}: {e}",
                sqlstate_suffix(&e)
            )),
            other => Error::Unavailable(format!("no pool connection: {other}")),
        }
    }
}

/// ` (SQLSTATE xxxxx)` when the error has one.
fn sqlstate_suffix(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| format!(" (SQLSTATE {})", c.code()))
        .unwrap_or_default()
}

impl Error {
    /// An error of a query on an open connection. Connection-level failures (no SQLSTATE, or
    /// the server going away) mean the database is unavailable; anything else with a SQLSTATE
    /// is the extension answering. (Opening a connection is [`Error::from_connect`]: every
    /// failure there is unavailability, whatever its SQLSTATE.)
    pub fn from_db(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            None => Error::Unavailable(e.to_string()),
            Some(db) if connection_lost(db.code()) => {
                Error::Unavailable(format!("{e}{}", sqlstate_suffix(&e)))
            }
            Some(db) => Error::Refused {
                sqlstate: db.code().code().to_owned(),
                message: db.message().to_owned(),
            },
        }
    }

    /// A connection that could not be opened (the pool's, or the LISTEN connection): always
    /// unavailable, with the SQLSTATE the server gave, if any, in the message.
    pub fn from_connect(e: tokio_postgres::Error) -> Self {
        Error::Unavailable(format!("cannot connect{}: {e}", sqlstate_suffix(&e)))
    }

    /// `from_db` for the call itself, once it was sent: a lost connection then leaves its
    /// outcome unknown (504), not undone (503).
    pub fn from_call(e: tokio_postgres::Error) -> Self {
        match Error::from_db(e) {
            Error::Unavailable(m) => Error::OutcomeUnknown(m),
            other => other,
        }
    }

    /// The SQLSTATE behind this error, if any (logged with every 5xx).
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            Error::Refused { sqlstate, .. } => Some(sqlstate.clone()),
            _ => None,
        }
    }
}

/// SQLSTATEs of a session the server ended (shutdown, crash, cannot connect now) or of a
/// broken connection (class 08).
fn connection_lost(code: &SqlState) -> bool {
    *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || code.code().starts_with("08")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the coordinator could not start: reported on stderr with a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `--database-url` is not a connection string. The value itself is not repeated: it may
    /// hold a password.
    #[error("invalid --database-url: {0}")]
    DatabaseUrl(#[source] tokio_postgres::Error),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("building the connection pool: {0}")]
    Pool(String),
}
