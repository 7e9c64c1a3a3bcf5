//! The one error type of the crate.

/// Why a call failed.
///
/// Which of these a caller may retry itself:
/// - [`Error::Api`]: the coordinator answered and refused; the request changed nothing.
///   Repeating it gets the same answer (except 409 races and 429, which may pass later).
/// - [`Error::Unavailable`]: no replica could serve the call within
///   [`ClientBuilder::retry_for`](crate::ClientBuilder::retry_for). When `maybe_applied` is
///   false, nothing was applied. When it is true, an attempt may have been applied; every
///   call that can end this way is idempotent (see [`Safety`](crate::Safety)), so calling it
///   again (with the same idempotency key for submits) is still safe.
/// - [`Error::OutcomeUnknown`]: a call that must not run twice (a workflow submit, a log line)
///   was sent and its answer was lost. Check the state before repeating it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The coordinator answered with an error (any 4xx, or a 5xx that is not worth retrying
    /// elsewhere, such as 500). The body was `{"error": {"code", "message", "sqlstate"?}}`.
    #[error("{status} {code}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
        /// `payload_too_large`, `request_timeout`, `too_many_requests`, `unavailable`,
        /// `internal`; `http_<status>` when the body was not the coordinator's JSON (a proxy's).
        code: String,
        /// Human-readable; for extension errors, the extension's message.
        message: String,
        /// The SQLSTATE when the extension raised the error (22023, P0002, 55000, 42501, ...).
        sqlstate: Option<String>,
    },
    /// Every replica failed (connection refused or timed out, lost answers, 502/503/504) until
    /// the call's retry budget ran out. `last` describes the last failure.
    #[error("no coordinator replica could serve the request (last: {last})")]
    Unavailable {
        /// The last failure, e.g. `http://10.0.0.2:8080: connection refused`.
        last: String,
        /// Whether an attempt may have been applied (its answer was lost).
        maybe_applied: bool,
    },
    /// A request that must not be repeated was sent, and its answer was lost (timeout, reset,
    /// replica gone, 502/504): it may or may not have been applied.
    #[error("the outcome is unknown: {0}")]
    OutcomeUnknown(String),
    /// The coordinator answered something this client cannot read.
    #[error("unexpected response: {0}")]
    InvalidResponse(String),
    /// A bad argument or configuration (no replicas, a non-http URL, an empty token, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// The HTTP status of an [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The SQLSTATE of an [`Error::Api`] raised by the extension.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Api { sqlstate, .. } => sqlstate.as_deref(),
            _ => None,
        }
    }

    /// The error of a non-2xx answer, from the coordinator's JSON error body (or, for a body
    /// that is not one, e.g. a proxy's HTML page, from the status and the start of the text).
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> Error {
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            code: String,
            message: String,
            #[serde(default)]
            sqlstate: Option<String>,
        }
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => Error::Api {
                status,
                code: error.code,
                message: error.message,
                sqlstate: error.sqlstate,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text: String = text.trim().chars().take(200).collect();
                Error::Api {
                    status,
                    code: format!("http_{status}"),
                    message: if text.is_empty() {
                        format!("HTTP {status}")
                    } else {
                        text
                    },
                    sqlstate: None,
                }
            }
        }
    }

    /// The message of an [`Error::Api`] (empty for other errors).
    pub(crate) fn message(&self) -> &str {
        match self {
            Error::Api { message, .. } => message,
            _ => "",
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_coordinators_error_body() {
        let e = Error::from_answer(
            409,
            br#"{"error":{"code":"conflict","message":"process 7 is not running (it is SUCCESS)","sqlstate":"55000"}}"#,
        );
        assert_eq!(e.status(), Some(409));
        assert_eq!(e.sqlstate(), Some("55000"));
        assert_eq!(e.message(), "process 7 is not running (it is SUCCESS)");
        assert_eq!(
            e.to_string(),
            "409 conflict: process 7 is not running (it is SUCCESS)"
        );
    }

    #[test]
    fn a_body_that_is_not_ours_still_makes_an_error() {
        let e = Error::from_answer(502, b"<html>Bad Gateway</html>\n");
        assert!(
            matches!(&e, Error::Api { code, message, sqlstate: None, .. }
            if code == "http_502" && message == "<html>Bad Gateway</html>")
        );
        let e = Error::from_answer(500, b"");
        assert_eq!(e.message(), "HTTP 500");
    }
}
