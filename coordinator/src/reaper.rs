//! The replica's reaper: calls colony_assign.reap() on an interval when no background worker
//! does it for this database (or always, or never: `--reap`).

use crate::config::{Config, ReapMode};
use crate::db::Db;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a "the database has its own reaper" answer is trusted.
const WORKER_CHECK_EVERY: Duration = Duration::from_secs(30);

pub async fn run(config: Arc<Config>, db: Db, shutdown: CancellationToken) {
    if config.reap == ReapMode::Off {
        return;
    }
    let mut worker_checked: Option<(Instant, bool)> = None;
    let mut tick = tokio::time::interval(config.reap_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if config.reap == ReapMode::Auto {
            let stale = worker_checked.is_none_or(|(at, _)| at.elapsed() >= WORKER_CHECK_EVERY);
            if stale {
                match db.worker_active().await {
                    Ok(active) => worker_checked = Some((Instant::now(), active)),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot tell whether the database reaps itself");
                        continue;
                    }
                }
            }
            if worker_checked.is_some_and(|(_, active)| active) {
                continue;
            }
        }
        // Passes until nothing is left over, so a backlog is not worked off one batch a tick.
        loop {
            match db.reap().await {
                Ok((requeued, failed, stale, deleted, more)) => {
                    if requeued + failed + stale + deleted > 0 {
                        tracing::info!(
                            requeued,
                            failed,
                            stale_executors = stale,
                            deleted,
                            "reaped"
                        );
                    }
                    if !more || shutdown.is_cancelled() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "reap failed");
                    break;
                }
            }
        }
    }
}
