//! Serving the router over TCP (HTTP/1.1, as `axum::serve` does), plus the one thing
//! `axum::serve` cannot be told: how long a client may take to send its request line and
//! headers (`--header-read-timeout-ms`). axum 0.8's `serve` gives hyper no timer, so hyper's
//! header timeout never runs there and a client that sends half a request line, or nothing,
//! keeps its socket forever (slow-loris).
//!
//! hyper's timeout runs whenever the connection waits for a request head: from the moment it is
//! accepted, and again after each response on a keep-alive connection (so a keep-alive
//! connection idle that long is closed too; clients reconnect). It never runs while a request
//! is being handled, so a parked long-poll is not cut. Bodies have their own deadline
//! (`body.rs`). On shutdown the server stops accepting, tells every connection to finish (the
//! long-polls answer on the same cancellation) and returns once all have closed.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// Serves `app` on `listener` until `shutdown`, then waits for open connections to finish.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    // The timer is what makes hyper enforce the header timeout at all.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, remote) = tokio::select! {
            // axum's accept: goes on at once after a per-connection error, and after 1 s when
            // out of file descriptors rather than spinning.
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            _ = shutdown.cancelled() => break,
        };
        let service = Connection {
            router: app.clone(),
        };
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Header timeouts land here too (hyper logs them at warn as well).
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The router as hyper calls it.
#[derive(Clone)]
struct Connection {
    router: Router,
}

impl hyper::service::Service<Request<Incoming>> for Connection {
    type Response = Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        // A router is always ready; axum::serve calls it the same way.
        self.router.clone().call(request.map(Body::new))
    }
}
