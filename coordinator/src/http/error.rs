//! The one place that decides HTTP statuses. Every error body is JSON ([`api::ErrorBody`]):
//! `{"error": {"code": "...", "message": "...", "sqlstate": "..."}}` (sqlstate when the
//! extension raised it).

use crate::api::{ErrorBody, ErrorDetail};
use crate::error::Error;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

impl Error {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) | Error::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Error::OutcomeUnknown(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Refused { sqlstate, .. } => status_of(sqlstate),
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn code(status: StatusCode) -> &'static str {
        match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::CONFLICT => "conflict",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::GATEWAY_TIMEOUT => "outcome_unknown",
            _ => "internal",
        }
    }
}

/// The status an extension error's SQLSTATE maps to.
fn status_of(sqlstate: &str) -> StatusCode {
    match sqlstate {
        // Invalid input: a bad value, a NULL, text that is not JSON or not a number, a number
        // or string out of range, a NUL byte (22021), a time that does not parse (22007) or
        // does not exist (22008).
        "22023" | "22004" | "22P02" | "22003" | "22001" | "22021" | "22007" | "22008" => {
            StatusCode::BAD_REQUEST
        }
        // An admin token removed after this replica cached it: the database had the last word.
        "28000" => StatusCode::UNAUTHORIZED,
        "P0002" => StatusCode::NOT_FOUND,
        "42501" => StatusCode::FORBIDDEN,
        "55000" | "23505" => StatusCode::CONFLICT,
        "54000" => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, sqlstate) = match &self {
            // Never leak internals (an unexpected SQLSTATE included); they are logged instead.
            Error::Internal(_) | Error::Refused { .. }
                if status == StatusCode::INTERNAL_SERVER_ERROR =>
            {
                ("internal error".to_owned(), None)
            }
            Error::Refused { sqlstate, message } => (message.clone(), Some(sqlstate.clone())),
            other => (other.to_string(), None),
        };
        if status.is_server_error() {
            let sqlstate = self.sqlstate();
            tracing::error!(error = %self, %status, sqlstate = sqlstate.as_deref().unwrap_or(""),
                "request failed");
        } else {
            tracing::debug!(error = %self, %status, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: Error::code(status).to_owned(),
                message,
                sqlstate,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still be on its way: the connection cannot carry another
            // request, and a slow client must not keep it open.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_promises_nothing_was_done_and_an_unknown_outcome_does_not() {
        let unavailable = Error::Unavailable("cannot connect (SQLSTATE 53300)".into());
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Error::code(unavailable.status()), "unavailable");
        let unknown = Error::OutcomeUnknown("connection closed".into());
        assert_eq!(unknown.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(Error::code(unknown.status()), "outcome_unknown");
        // A batch that failed as a whole tells each of its requests the same.
        assert_eq!(unknown.clone().status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            unavailable.clone().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
