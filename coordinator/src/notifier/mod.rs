//! The notifier owns this replica's one LISTEN connection and the registry of parked
//! long-polls, and turns the extension's notifications into wake-ups of exactly the right
//! waiters. Waiters hold no database connection: only the LISTEN connection listens.
//!
//! - `keys`: the wake keys a parked executor listens on.
//! - `registry`: who waits on which key, and who a wake goes to (the wake rules).
//! - `listener`: the LISTEN connection, its ping, backoff and reconnects.
//! - `catchup`: notifications are hints; the catch-up finds work none announced.
//! - `control`: `ca_control` events (removals), published to subscribers such as the token
//!   cache.
//!
//! This module ties them together behind [`Notifier`], the handle the HTTP handlers use: the
//! registration of a parked long-poll, and the LISTEN connection's state (a `watch`, so a
//! long-poll learns at once when this replica can no longer be told of work). It also sends the
//! dashboard (http/ui.rs) its wake latencies, while the dashboard listens.

mod catchup;
mod control;
mod keys;
mod listener;
mod registry;

pub use control::{ControlEvent, ControlEvents};
pub use registry::Snapshot;

use crate::config::Config;
use crate::db::{Db, Executor};
use crate::error::{Error, Result};
use crate::metrics as m;
use catchup::CatchUp;
use colony_proto::{CATCHUP_CHANNEL, CONTROL_CHANNEL, parse_wake_payload};
use registry::{AtCapacity, Registry, WaiterId, Wakes};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How long a new long-poll waits for the LISTEN on a channel it is the first to need. Longer
/// only while the database is unreachable; the catch-up after reconnecting covers that case.
const LISTEN_CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);

/// LISTEN requests queued for the LISTEN connection. A channel is requested once, by the first
/// waiter that needs it, so the queue fills only with a burst of new keys while the connection
/// is busy or down. A request that finds it full is dropped rather than waited for (the handler
/// holds the registry lock, and the connection may be down for seconds): its channel stays
/// requested in the registry, which the LISTEN connection reads back after its next batch.
const LISTEN_REQUEST_QUEUE: usize = 1024;

/// Wake latencies kept for a dashboard that falls behind; one that lags more skips to the
/// newest (they are samples for a chart, so losing some costs little).
const WAKE_LATENCY_QUEUE: usize = 1024;

/// Why waiters were woken: the `cause` label of `colony_wakes_total`.
#[derive(Debug, Clone, Copy)]
enum WakeCause {
    Notification,
    Catchup,
    Reconnect,
    Overflow,
    Handoff,
}

impl WakeCause {
    fn label(self) -> &'static str {
        match self {
            WakeCause::Notification => "notification",
            WakeCause::Catchup => "catchup",
            WakeCause::Reconnect => "reconnect",
            WakeCause::Overflow => "overflow",
            WakeCause::Handoff => "handoff",
        }
    }
}

fn record_wakes(wakes: &Wakes, cause: WakeCause) {
    if wakes.wrong > 0 {
        metrics::counter!(m::WRONG_WAKES).increment(wakes.wrong as u64);
    }
    if !wakes.woken.is_empty() {
        metrics::counter!(m::WAKES, "kind" => wakes.kind, "cause" => cause.label())
            .increment(wakes.woken.len() as u64);
    }
}

/// Handle to the notifier; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

/// What the handle, the LISTEN connection and the catch-up share.
struct Shared {
    config: Arc<Config>,
    db: Db,
    registry: Mutex<Registry>,
    /// Channels parked long-polls need and nobody listens on yet, for the LISTEN connection
    /// (bounded: see `LISTEN_REQUEST_QUEUE`).
    listen_requests: mpsc::Sender<String>,
    catch_up: CatchUp,
    control: ControlEvents,
    /// Whether the LISTEN connection is up. Parked long-polls watch it, so they hear of a loss
    /// (and of the connection coming back) without polling and without being woken.
    connection: watch::Sender<bool>,
    /// For each long-poll woken by a notification, from the notification's arrival to the start
    /// of its assign (the replica's part of the wake-up latency), for the dashboard. Measured
    /// only while someone subscribes, so a replica without a dashboard viewer pays nothing.
    wake_latencies: broadcast::Sender<Duration>,
}

impl Notifier {
    /// Starts the LISTEN connection and the catch-up, in one task that ends on shutdown. The
    /// connection is made in the background and kept up; until it is, a long-poll still
    /// assigns once when it arrives, and the catch-up after connecting serves the rest.
    pub fn start(
        config: Arc<Config>,
        db: Db,
        control: ControlEvents,
        shutdown: CancellationToken,
    ) -> (Notifier, tokio::task::JoinHandle<()>) {
        let (listen_requests, listen_requested) = mpsc::channel(LISTEN_REQUEST_QUEUE);
        let (catch_up, catch_up_requested) = CatchUp::new();
        let shared = Arc::new(Shared {
            config,
            db,
            registry: Mutex::new(Registry::default()),
            listen_requests,
            catch_up,
            control,
            connection: watch::channel(false).0,
            wake_latencies: broadcast::channel(WAKE_LATENCY_QUEUE).0,
        });
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                tokio::join!(
                    listener::run(shared.clone(), listen_requested, shutdown.clone()),
                    catchup::run(shared, catch_up_requested, shutdown),
                );
            }
        });
        (Notifier { shared }, task)
    }

    /// Whether the LISTEN connection is up.
    pub fn connected(&self) -> bool {
        self.shared.is_connected()
    }

    /// The LISTEN connection's state from now on: true while it is up.
    pub fn connection(&self) -> watch::Receiver<bool> {
        self.shared.connection.subscribe()
    }

    /// Registers a long-poll of `executor` on its keys and waits until LISTEN is in effect on
    /// each of them (bounded), so any work committed from now on is announced to it. Refused
    /// with `TooManyRequests` when the executor has `--max-parked-per-executor` parked already.
    pub async fn register(&self, executor: &Executor) -> Result<Registration> {
        let limit = self.shared.config.max_parked_per_executor as usize;
        let parked = {
            let mut registry = self.shared.registry();
            let parked = registry
                .park_within(executor, limit)
                .map_err(|AtCapacity(parked)| {
                    Error::TooManyRequests(format!(
                        "this executor already has {parked} long-polls waiting on this \
                         coordinator, the most it allows; retry when one has been answered"
                    ))
                })?;
            for channel in &parked.to_listen {
                // False only once the LISTEN connection is gone: after shutdown, when nobody
                // parks.
                listener::forward(&self.shared.listen_requests, channel.clone(), || {
                    registry.listen_request_dropped();
                    metrics::counter!(m::QUEUE_OVERFLOWS, "queue" => "listen_requests")
                        .increment(1);
                });
            }
            parked
        };
        // Unparks on drop, also if this future is dropped while it waits below.
        let registration = Registration {
            shared: self.shared.clone(),
            id: parked.id,
            wake: parked.wake,
        };
        let _ = tokio::time::timeout(
            LISTEN_CONFIRM_TIMEOUT,
            futures_util::future::join_all(parked.listen_confirmations),
        )
        .await;
        Ok(registration)
    }

    pub fn snapshot(&self) -> Snapshot {
        self.shared.registry().snapshot()
    }

    /// This replica's wake latencies from now on (see `Shared::wake_latencies`). They are
    /// measured while a receiver exists: drop it when nobody needs them.
    pub fn wake_latencies(&self) -> broadcast::Receiver<Duration> {
        self.shared.wake_latencies.subscribe()
    }
}

/// A parked long-poll; dropping it (answer, timeout, client gone) unparks it at once.
pub struct Registration {
    shared: Arc<Shared>,
    id: WaiterId,
    wake: Arc<Notify>,
}

impl Registration {
    /// Call before each assign attempt: clears the pending wake (a wake arriving from now on
    /// triggers another attempt) and returns the channel that woke us, if any.
    pub fn begin_attempt(&self) -> Option<String> {
        let wake = self.shared.registry().begin_attempt(self.id)?;
        if let Some(at) = wake.at {
            let _ = self.shared.wake_latencies.send(at.elapsed());
        }
        Some(wake.channel)
    }

    /// Resolves on the next wake (or revocation).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// The executor was removed (or its colony) while it waited.
    pub fn revoked(&self) -> bool {
        self.shared.registry().is_revoked(self.id)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let handoff = self.shared.registry().unpark(self.id, Instant::now());
        if let Some(wakes) = handoff {
            record_wakes(&wakes, WakeCause::Handoff);
        }
    }
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // The registry's critical sections do not panic; if one ever did, its data is still a
        // valid set of waiters, so keep serving rather than poisoning every later request.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_connected(&self) -> bool {
        *self.connection.borrow()
    }

    /// Handles one notification of the LISTEN connection.
    fn dispatch(&self, channel: &str, payload: &str) {
        match channel {
            CONTROL_CHANNEL => self.on_control(payload),
            CATCHUP_CHANNEL => self.catch_up.on_overflow(),
            _ => {
                let mut registry = self.registry();
                let wakes = registry.wake(channel, parse_wake_payload(payload));
                if let Some(wakes) = &wakes
                    && self.wake_latencies.receiver_count() > 0
                {
                    // Started under the same lock as the wake, so the woken long-poll's next
                    // attempt finds it.
                    registry.time_wakes(&wakes.woken, Instant::now());
                }
                drop(registry);
                let kind = wakes.as_ref().map_or("unknown", |w| w.kind);
                metrics::counter!(m::NOTIFICATIONS, "kind" => kind).increment(1);
                if let Some(wakes) = &wakes {
                    record_wakes(wakes, WakeCause::Notification);
                }
            }
        }
    }

    /// The LISTEN connection's reader dropped a notification because the queue to `dispatch`
    /// was full (see `listener::NOTIFICATION_QUEUE`). Whatever it announced is recovered as
    /// after a reconnect: the catch-up finds the work, and the token cache forgets everything
    /// in case it was a removal. (Parked long-polls of an executor removed then are not told at
    /// once; they answer at their timeout, and the next poll is refused.)
    fn notification_dropped(&self) {
        metrics::counter!(m::QUEUE_OVERFLOWS, "queue" => "notifications").increment(1);
        self.control.publish(&ControlEvent::MissedWhileDisconnected);
        self.catch_up.on_overflow();
    }

    /// LISTEN requests that were dropped (the queue was full), to be LISTENed after the batch
    /// just taken from the queue.
    fn take_dropped_listen_requests(&self) -> Vec<String> {
        self.registry().take_dropped_listen_requests()
    }

    /// An executor, colony or admin was removed: subscribers forget what it voids, then the
    /// removed executors' parked long-polls are told. In this order, a removed executor that polls again after its 401
    /// finds its token forgotten.
    fn on_control(&self, payload: &str) {
        let event = match serde_json::from_str::<ControlEvent>(payload) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(payload, error = %e, "malformed control notification");
                return;
            }
        };
        self.control.publish(&event);
        self.registry().revoke(|executor| event.removes(executor));
    }

    /// What to LISTEN on after connecting: the control and catch-up channels and every channel
    /// someone waits on.
    fn channels_to_listen(&self) -> Vec<String> {
        let mut channels = vec![CONTROL_CHANNEL.to_owned(), CATCHUP_CHANNEL.to_owned()];
        channels.extend(self.registry().channels_to_relisten());
        channels
    }

    /// LISTEN is in effect on `channels` (sent after connecting, or asked for since).
    fn listening(&self, channels: &[String]) {
        self.registry().mark_listening(channels);
    }

    /// The LISTEN connection is up and LISTENs on `channels`.
    fn connection_up(&self, channels: &[String], reconnected: bool) {
        self.listening(channels);
        self.connection.send_replace(true);
        if reconnected {
            self.control.publish(&ControlEvent::MissedWhileDisconnected);
        }
        self.catch_up.after_connect();
    }

    /// The LISTEN connection is gone: parked long-polls see it in `connection` and, unless it
    /// is back within a moment, answer 503 so their executors move to a replica that can still
    /// be told of work (http/assign.rs).
    fn connection_down(&self) {
        self.registry().mark_unlistened();
        self.connection.send_replace(false);
    }

    /// Channels nobody has waited on for `--unlisten-after`, forgotten and to be UNLISTENed.
    fn take_idle_channels(&self) -> Vec<String> {
        self.registry()
            .take_idle(Instant::now(), self.config.unlisten_after())
    }
}
