//! The catch-up: notifications are hints, so the notifier also asks the database which parked
//! keys have assignable work (one `backlog()` query for all of them; paused colonies are
//! skipped) and wakes that many waiters. It runs every `--catchup-interval` while the LISTEN
//! connection is up, after every (re)connect, and at once when the database's relay signals on
//! `ca_catchup` that it dropped notifications. A lost notification then costs at most one
//! interval, never a full poll timeout.

use super::{Shared, WakeCause, record_wakes};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Asks the catch-up task for a pass now. Requests made while a pass runs are answered by one
/// more pass, so a burst of them costs one query.
pub(super) struct CatchUp {
    requests: mpsc::Sender<WakeCause>,
}

impl CatchUp {
    pub(super) fn new() -> (CatchUp, mpsc::Receiver<WakeCause>) {
        // Room for one request: one waiting is a pass that has not started yet, and that pass
        // answers every request made before it starts, so a second one would add nothing.
        let (requests, received) = mpsc::channel(1);
        (CatchUp { requests }, received)
    }

    fn request(&self, cause: WakeCause) {
        // Full: a pass is due that starts after this request, so it is answered (its cause
        // label is the earlier request's). Closed: the task is gone only after shutdown, when
        // no waiter needs a catch-up. Never wait: requests come from the LISTEN task.
        let _ = self.requests.try_send(cause);
    }

    /// The LISTEN connection is (re)established: work submitted while nobody listened was
    /// announced to no one.
    pub(super) fn after_connect(&self) {
        self.request(WakeCause::Reconnect);
    }

    /// A `ca_catchup` notification: the database's relay dropped notifications (its table was
    /// full), so look now rather than at the next interval.
    pub(super) fn on_overflow(&self) {
        self.request(WakeCause::Overflow);
    }
}

/// Runs catch-up passes, one at a time, until shutdown.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<WakeCause>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(shared.config.catchup_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let cause = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            Some(cause) = requests.recv() => cause,
            _ = tick.tick() => {
                // While the LISTEN connection is down the database is most often unreachable
                // too, and the pass after reconnecting covers the gap.
                if !shared.is_connected() {
                    continue;
                }
                WakeCause::Catchup
            }
        };
        // One pass answers every request made until now.
        while requests.try_recv().is_ok() {}
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = pass(&shared, cause) => {}
        }
    }
}

/// One pass: which parked keys (with a waiter that has no wake pending) have work, and how
/// much; wakes that many waiters on each.
async fn pass(shared: &Shared, cause: WakeCause) {
    // Shared with the registry's cache: nothing is copied while nothing changed.
    let keys = shared.registry().keys_awaiting_work();
    if keys.is_empty() {
        return;
    }
    let colonies: Vec<&str> = keys.iter().map(|k| k.colony.as_str()).collect();
    let types: Vec<&str> = keys.iter().map(|k| k.executor_type.as_str()).collect();
    let locations: Vec<Option<&str>> = keys.iter().map(|k| k.location.as_deref()).collect();
    let executors: Vec<Option<&str>> = keys.iter().map(|k| k.executor.as_deref()).collect();
    match shared
        .db
        .backlog(&colonies, &types, &locations, &executors)
        .await
    {
        Ok(found) => {
            let mut registry = shared.registry();
            for (index, waiting) in found {
                if let Some(wakes) = keys
                    .get(index)
                    .and_then(|key| registry.wake(&key.channel, waiting))
                {
                    record_wakes(&wakes, cause);
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "catch-up check failed"),
    }
}
