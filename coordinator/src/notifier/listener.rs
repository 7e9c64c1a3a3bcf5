//! The LISTEN connection: this replica's one database session that LISTENs, on the control and
//! catch-up channels and on every channel a parked long-poll waits on. It connects in the
//! background, re-LISTENs everything after each reconnect, pings the connection when it has
//! been silent (a link that dropped without closing is noticed within about two pings), and
//! backs off exponentially while it cannot get a working connection.

use super::Shared;
use crate::config::Config;
use crate::db;
use crate::error::Error;
use crate::metrics as m;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification};
use tokio_util::sync::CancellationToken;

/// Notifications read from the connection and not yet dispatched. The reader never waits for
/// room: while it waited it would not read the connection, so a LISTEN or ping that the serve
/// loop awaits could not complete (a deadlock until the ping timeout), and PostgreSQL's
/// notification queue would grow for every session of the database. When the queue is full the
/// notification is dropped, counted, and recovered like notifications missed during a
/// reconnect (`Shared::notification_dropped`): notifications are hints, the table is the truth.
/// The serve loop dispatches one in microseconds, so this fills only while it awaits a LISTEN
/// or a ping under a flood of commits.
const NOTIFICATION_QUEUE: usize = 8192;

/// How often channels nobody waits on any more are looked for, to be UNLISTENed.
const IDLE_SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The first reconnect delay after a failure; it doubles with each failure in a row.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A connection that stayed up this long was healthy, and losing it reconnects at once. One
/// lost sooner counts as a failure, so a server that accepts the connection and the LISTEN and
/// then drops it again at once is not reconnected to in a tight loop.
const HEALTHY_AFTER: Duration = Duration::from_secs(5);

/// Keeps the LISTEN connection up until shutdown. `listen_requests` carries the channels that
/// parked long-polls need and nobody listens on yet.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut listen_requests: mpsc::Receiver<String>,
    shutdown: CancellationToken,
) {
    let answer_within = answer_within(&shared.config);
    let mut backoff = Backoff::default();
    let mut reconnecting = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(jittered(backoff.delay())) => {}
        }
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = connect(&shared) => connected,
        };
        let (client, mut notifications) = match connected {
            Ok(connection) => connection,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection: cannot connect; retrying");
                backoff.failed();
                continue;
            }
        };
        let channels = shared.channels_to_listen();
        let listened = tokio::select! {
            _ = shutdown.cancelled() => return,
            listened = execute(&client, "LISTEN", &channels, answer_within) => listened,
        };
        if let Err(e) = listened {
            tracing::warn!(error = %e, "LISTEN failed; reconnecting");
            backoff.failed();
            continue;
        }
        let connected_at = Instant::now();
        shared.connection_up(&channels, reconnecting);
        metrics::gauge!(m::LISTENER_CONNECTED).set(1.0);
        if reconnecting {
            metrics::counter!(m::LISTENER_RECONNECTS).increment(1);
            tracing::info!(
                channels = channels.len(),
                "LISTEN connection re-established"
            );
        }
        reconnecting = true;

        let ended = serve(
            &shared,
            &client,
            &mut notifications,
            &mut listen_requests,
            &shutdown,
        )
        .await;
        shared.connection_down();
        metrics::gauge!(m::LISTENER_CONNECTED).set(0.0);
        backoff.lost_after(connected_at.elapsed());
        match ended {
            SessionEnd::Shutdown => return,
            SessionEnd::Lost(reason) => {
                tracing::warn!(reason, "LISTEN connection lost; reconnecting")
            }
        }
    }
}

/// How serving one connection ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Serves one LISTEN connection until it fails or shutdown.
async fn serve(
    shared: &Shared,
    client: &Client,
    notifications: &mut mpsc::Receiver<Notification>,
    listen_requests: &mut mpsc::Receiver<String>,
    shutdown: &CancellationToken,
) -> SessionEnd {
    let ping = shared.config.listen_ping();
    let answer_within = answer_within(&shared.config);
    let mut sweep_tick = tokio::time::interval(IDLE_SWEEP_EVERY);
    sweep_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return SessionEnd::Shutdown,
            notification = notifications.recv() => match notification {
                Some(n) => {
                    last_heard = Instant::now();
                    shared.dispatch(n.channel(), n.payload());
                }
                None => return SessionEnd::Lost("connection closed".into()),
            },
            Some(first) = listen_requests.recv() => {
                let mut channels = vec![first];
                while let Ok(more) = listen_requests.try_recv() {
                    channels.push(more);
                }
                channels.extend(shared.take_dropped_listen_requests());
                channels.sort_unstable();
                channels.dedup();
                // On failure the channels stay requested, and the next connection LISTENs them.
                if let Err(e) = execute(client, "LISTEN", &channels, answer_within).await {
                    return SessionEnd::Lost(format!("LISTEN did not complete: {e}"));
                }
                shared.listening(&channels);
                last_heard = Instant::now();
            }
            // Pinged exactly `ping` after the last sign of life (not on a fixed tick, which let
            // up to another `ping` of silence pass first), so a dead link is noticed within
            // 2 × `ping` of going silent: 1.5 s by default.
            _ = tokio::time::sleep_until((last_heard + ping).into()) => {
                match tokio::time::timeout(ping, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => last_heard = Instant::now(),
                    _ => return SessionEnd::Lost("ping unanswered".into()),
                }
            }
            _ = sweep_tick.tick() => {
                let idle = shared.take_idle_channels();
                if !idle.is_empty()
                    && let Err(e) = execute(client, "UNLISTEN", &idle, answer_within).await
                {
                    return SessionEnd::Lost(format!("UNLISTEN did not complete: {e}"));
                }
            }
        }
    }
}

/// Connects the LISTEN connection; its driver task forwards notifications until the
/// connection dies, then drops the sender (which is how `serve` learns of it).
async fn connect(shared: &Arc<Shared>) -> Result<(Client, mpsc::Receiver<Notification>), Error> {
    let config = &shared.config;
    // run() refused to start with a string that does not parse, so this cannot fail here.
    let mut pg = db::pg_config(config).map_err(|e| Error::Internal(e.to_string()))?;
    // Operators (and the fault tests) can tell this connection from the query pool.
    pg.application_name(format!(
        "colony-coordinator {} listen",
        config.replica_name()
    ));
    let (client, mut connection) = pg.connect(NoTls).await.map_err(Error::from_connect)?;
    let (tx, rx) = mpsc::channel(NOTIFICATION_QUEUE);
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if !forward(&tx, n, || shared.notification_dropped()) {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed");
                    return;
                }
            }
        }
    });
    Ok((client, rx))
}

/// Queues `item` without waiting; when the queue is full it is dropped and `dropped` is called.
/// False once the receiving end is gone.
pub(super) fn forward<T>(queue: &mpsc::Sender<T>, item: T, dropped: impl FnOnce()) -> bool {
    match queue.try_send(item) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            dropped();
            true
        }
        Err(TrySendError::Closed(_)) => false,
    }
}

/// How long a LISTEN or UNLISTEN may take before the link counts as dead: as long as a silent
/// connection is given to answer its ping (`--listen-ping-ms` of silence, then as much again).
fn answer_within(config: &Config) -> Duration {
    config.listen_ping() * 2
}

/// LISTENs or UNLISTENs `channels`. No answer within `within` counts as a dead link.
async fn execute(
    client: &Client,
    verb: &str,
    channels: &[String],
    within: Duration,
) -> Result<(), Error> {
    // Channel names are ASCII from colony-proto (or the fixed control and catch-up names):
    // quoting is only there so the identifier is taken verbatim.
    let sql: String = channels
        .iter()
        .map(|n| format!("{verb} \"{}\";", n.replace('"', "\"\"")))
        .collect();
    match tokio::time::timeout(within, client.batch_execute(&sql)).await {
        Ok(answered) => answered.map_err(Error::from_db),
        Err(_) => Err(Error::Unavailable(format!("no answer within {within:?}"))),
    }
}

/// The delay before the next connection attempt: none after a healthy connection, then
/// `BACKOFF_FIRST` doubling to at most `BACKOFF_MAX` with each failure in a row.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn delay(&self) -> Duration {
        match self.failures {
            0 => Duration::ZERO,
            n => BACKOFF_FIRST
                .saturating_mul(1 << (n - 1).min(16))
                .min(BACKOFF_MAX),
        }
    }

    /// Connecting failed, or the LISTEN right after it.
    fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// A connection that served `lasted` was lost.
    fn lost_after(&mut self, lasted: Duration) {
        if lasted >= HEALTHY_AFTER {
            self.failures = 0;
        } else {
            self.failed();
        }
    }
}

/// Somewhere in the upper half of `delay`, so replicas that lost the database together do not
/// all come back in the same instant.
fn jittered(delay: Duration) -> Duration {
    let half = delay / 2;
    half + Duration::from_micros(rand::random_range(0..=half.as_micros() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn after_failures(n: u32) -> Backoff {
        let mut backoff = Backoff::default();
        for _ in 0..n {
            backoff.failed();
        }
        backoff
    }

    #[test]
    fn a_full_queue_drops_and_reports_instead_of_waiting() {
        let (queue, mut received) = mpsc::channel(1);
        let mut drops = 0;
        assert!(forward(&queue, 1, || drops += 1));
        assert!(forward(&queue, 2, || drops += 1), "still connected");
        assert_eq!(drops, 1);
        assert_eq!(received.try_recv(), Ok(1));
        assert!(received.try_recv().is_err(), "the second was dropped");
        assert!(forward(&queue, 3, || drops += 1));
        assert_eq!(drops, 1, "room again");
        drop(received);
        assert!(!forward(&queue, 4, || drops += 1), "the receiver is gone");
        assert_eq!(drops, 1);
    }

    #[test]
    fn backoff_grows() {
        let delays: Vec<Duration> = (0..6).map(|n| after_failures(n).delay()).collect();
        assert_eq!(
            delays,
            [ms(0), ms(100), ms(200), ms(400), ms(800), ms(1600)]
        );
        assert!(delays.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn backoff_is_capped() {
        assert_eq!(after_failures(6).delay(), BACKOFF_MAX);
        assert_eq!(after_failures(40).delay(), BACKOFF_MAX);
        let mut saturated = Backoff { failures: u32::MAX };
        assert_eq!(saturated.delay(), BACKOFF_MAX);
        saturated.failed();
        assert_eq!(saturated.delay(), BACKOFF_MAX);
    }

    #[test]
    fn backoff_resets_after_a_healthy_period() {
        let mut backoff = after_failures(4);
        backoff.lost_after(HEALTHY_AFTER);
        assert_eq!(backoff.delay(), Duration::ZERO, "reconnect at once");
        backoff.failed();
        assert_eq!(
            backoff.delay(),
            BACKOFF_FIRST,
            "and start over from the first step"
        );
    }

    #[test]
    fn a_connection_lost_right_after_connecting_keeps_backing_off() {
        let mut backoff = Backoff::default();
        backoff.lost_after(ms(3));
        assert_eq!(backoff.delay(), ms(100));
        backoff.failed();
        backoff.lost_after(HEALTHY_AFTER - ms(1));
        assert_eq!(backoff.delay(), ms(400));
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        for n in 0..8 {
            let delay = after_failures(n).delay();
            for _ in 0..100 {
                let jittered = jittered(delay);
                assert!(
                    delay / 2 <= jittered && jittered <= delay,
                    "{jittered:?} for {delay:?}"
                );
            }
        }
    }
}
