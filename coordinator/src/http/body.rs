//! The request-body deadline (`--body-read-timeout-ms`): once a handler starts reading a body,
//! all of it must arrive within the timeout, however it trickles in. A per-read timeout would
//! not do: a client sending one byte just before each read times out could hold a request (and
//! its socket) open for as long as it likes.
//!
//! Handlers that never read their body are never timed: the long-poll waits up to
//! `--max-timeout-s` without reading anything.

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// The error a body gives once its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct TimedOut(pub Duration);

/// `request` with a body that fails with [`TimedOut`] unless it has arrived in full within
/// `timeout` of its first read.
pub fn with_deadline(request: Request, timeout: Duration) -> Request {
    request.map(|inner| {
        Body::new(Deadline {
            inner,
            timeout,
            expires: None,
        })
    })
}

/// Whether a failure to read a body (any error whose source chain it is in) was its deadline.
pub fn timed_out(error: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(TimedOut(timeout)) = error.downcast_ref::<TimedOut>() {
            return Some(*timeout);
        }
        next = error.source();
    }
    None
}

struct Deadline {
    inner: Body,
    timeout: Duration,
    /// Started by the first read.
    expires: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let timeout = this.timeout;
        let expires = this
            .expires
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        // Checked before every read, not only when one would wait, so a body that always has a
        // little more ready cannot outrun it either.
        if expires.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(TimedOut(timeout)))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::FromRequest;
    use axum::extract::rejection::BytesRejection;
    use std::convert::Infallible;

    /// A body whose client sends one chunk and then nothing more.
    struct Stalled {
        sent: bool,
    }

    impl http_body::Body for Stalled {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if std::mem::replace(&mut self.sent, true) {
                Poll::Pending
            } else {
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{\"a\":")))))
            }
        }
    }

    fn request(body: Body, timeout: Duration) -> Request {
        with_deadline(Request::new(body), timeout)
    }

    #[tokio::test]
    async fn a_stalled_body_fails_with_its_deadline_as_the_extractor_sees_it() {
        let timeout = Duration::from_millis(20);
        let started = tokio::time::Instant::now();
        let rejection =
            Bytes::from_request(request(Body::new(Stalled { sent: false }), timeout), &())
                .await
                .expect_err("the body never completes");
        assert!(started.elapsed() >= timeout);
        assert!(matches!(rejection, BytesRejection::FailedToBufferBody(_)));
        assert_eq!(timed_out(&rejection), Some(timeout));
    }

    #[tokio::test]
    async fn a_complete_body_is_read_as_is_and_other_failures_are_not_timeouts() {
        let body = Bytes::from_request(
            request(Body::from("{\"a\": 1}"), Duration::from_secs(5)),
            &(),
        )
        .await
        .unwrap();
        assert_eq!(body, Bytes::from_static(b"{\"a\": 1}"));
        let other = axum::Error::new(std::io::Error::other("connection reset"));
        assert_eq!(timed_out(&other), None);
    }
}
