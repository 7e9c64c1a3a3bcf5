//! The live dashboard: `GET /ui` (one page, its script and style, compiled into the binary:
//! nothing is fetched from anywhere else, and the Content-Security-Policy forbids it) and
//! `GET /ui/events`, a server-sent event stream of this replica's snapshot for admin tokens.
//!
//! Login: the page asks for an admin token, keeps it in `sessionStorage` (gone with the tab),
//! and sends it as `Authorization: Bearer` on every request, the event stream included: the
//! page reads the stream with `fetch()` rather than `EventSource`, which cannot send headers,
//! so a token never travels in a URL (where logs and proxies would keep it). docs/dashboard.md
//! describes the panels and what they cost.

mod hub;
mod series;

use super::AppState;
use super::extract::AsAdmin;
use crate::api::ErrorBody;
use crate::auth::{Admin, Principal};
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use hub::{Hub, Published};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::watch;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const PAGE: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/app.css");

/// Scripts, styles, images and connections from this origin only: the dashboard works without
/// any network but the coordinator's, and injected markup could not load or send anything.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ui_page))
        .routes(routes!(ui_script))
        .routes(routes!(ui_style))
        .routes(routes!(ui_events))
        // One hub per router, and `app()` builds one router per replica.
        .layer(Extension(Arc::new(Hub::default())))
}

/// A static asset with the headers every dashboard answer carries.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Assets change with the binary; a browser must not keep an old script for a new replica.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The dashboard (HTML). It asks for an admin token, then shows the live event stream.
#[utoipa::path(get, path = "/ui", tag = "dashboard",
    responses((status = 200, description = "The dashboard page.", body = String, content_type = "text/html")))]
async fn ui_page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// The dashboard's script.
#[utoipa::path(get, path = "/ui/app.js", tag = "dashboard",
    responses((status = 200, description = "JavaScript.", body = String, content_type = "text/javascript")))]
async fn ui_script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The dashboard's style sheet.
#[utoipa::path(get, path = "/ui/app.css", tag = "dashboard",
    responses((status = 200, description = "CSS.", body = String, content_type = "text/css")))]
async fn ui_style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The dashboard's live data: server-sent events, each `event: snapshot` with this replica's
/// snapshot as JSON (colonies the token reaches, their backlog, executors, recent and failed
/// processes, newest workflows, and the replica's throughput and latency history). The current
/// snapshot comes first, then one at most a second while there is activity, and one every few
/// seconds otherwise. `event: revoked` and the end of the stream follow the token's removal.
#[utoipa::path(get, path = "/ui/events", tag = "dashboard",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The event stream.", body = String, content_type = "text/event-stream"),
        (status = 401, description = "No, a malformed or an unknown bearer token.", body = ErrorBody),
        (status = 403, description = "An executor token.", body = ErrorBody),
        (status = 500, description = "Anything else (logged; the body says no more).", body = ErrorBody),
        (status = 503, description = "The database is unreachable (checking the token).", body = ErrorBody),
    ))]
async fn ui_events(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<Hub>>,
    authed: AsAdmin,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let viewer = Viewer {
        snapshots: hub.subscribe(&state),
        // Kept to check the token again before each snapshot.
        token: authed.token().to_owned(),
        admin: authed.admin,
        state,
        ended: false,
    };
    let stream = futures_util::stream::unfold(viewer, |mut viewer| async move {
        let event = viewer.next().await?;
        Some((Ok(event), viewer))
    });
    // Comments every 15 s keep proxies from closing a quiet stream.
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// One viewer's stream.
struct Viewer {
    snapshots: watch::Receiver<Option<Arc<Published>>>,
    admin: Admin,
    token: String,
    state: AppState,
    ended: bool,
}

impl Viewer {
    /// The next event, or None to end the stream (shutdown, the token removed).
    async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        loop {
            tokio::select! {
                changed = self.snapshots.changed() => changed.ok()?,
                // Graceful shutdown waits for open responses: end the stream at once.
                _ = self.state.shutdown.cancelled() => return None,
            }
            let Some(published) = self.snapshots.borrow_and_update().clone() else {
                continue;
            };
            // The token cache forgets a removed admin at once (control events), so this asks
            // the database only then, and once per --token-cache-s otherwise.
            match self
                .state
                .tokens
                .authenticate(&self.state.db, &self.token)
                .await
            {
                Ok(Principal::Admin(admin)) => self.admin = admin,
                Ok(Principal::Executor(_)) | Err(crate::error::Error::Unauthorized(_)) => {
                    self.ended = true;
                    return Some(Event::default().event("revoked").data("{}"));
                }
                // The database is down: keep showing what we have, it says so itself.
                Err(_) => {}
            }
            let json = published
                .snapshot
                .json_for(&self.admin, &published.everything);
            return Some(Event::default().event("snapshot").data(&*json));
        }
    }
}
