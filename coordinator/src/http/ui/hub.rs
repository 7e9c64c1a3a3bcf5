//! One publisher per replica: builds the dashboard's snapshot from the admin queries (through
//! `Db`, as the admin API does) at most once a second, and only when there was activity (this
//! replica's own assign/close/notification counters) or the slow refresh is due, and only while
//! someone watches. While someone watches it also takes the notifier's wake latencies, and only
//! then: with nobody watching the notifier does not measure them. Every viewer's stream reads the same snapshot, so
//! viewers cost no queries: a replica runs one query set a second at most, however many
//! dashboards are open.

use super::series::{History, Series};
use crate::api;
use crate::auth::Admin;
use crate::db::{Db, ProcessFilter};
use crate::error::Result;
use crate::http::AppState;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{Notify, watch};

/// The shortest time between two snapshots (and the sampling period of the history).
const PERIOD: Duration = Duration::from_secs(1);
/// A snapshot is rebuilt this often even without activity this replica sees: work submitted
/// through another replica or SQL, executors going stale, the reaper's requeues.
const SLOW_REFRESH: Duration = Duration::from_secs(5);
/// What one snapshot shows at most, so its cost and size stay bounded however big the system.
const MAX_COLONIES: i32 = 50;
const MAX_EXECUTORS: i32 = 100;
const RECENT: i32 = 25;
const FAILED: i32 = 10;
const WORKFLOWS: usize = 3;
/// Queries of one snapshot in flight at once: leaves the rest of the pool to executors. Each
/// colony's queries run one after the other, and this many colonies at once.
const QUERIES_IN_FLIGHT: usize = 4;

/// What the dashboard shows, as one JSON document (the `snapshot` event of `/ui/events`).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Snapshot {
    /// When it was built (Unix milliseconds).
    pub at_ms: u64,
    pub replica: String,
    /// Whether this replica's LISTEN connection is up.
    pub listener: bool,
    /// Why the last refresh failed (the data is then from the refresh before).
    pub error: Option<String>,
    pub colonies: Vec<ColonyView>,
    /// This replica's throughput and latency (replica-wide, like `/metrics`).
    pub history: History,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColonyView {
    pub colony: api::Colony,
    pub stats: api::Stats,
    /// Backlog per (executor type, location) with the oldest waiting process's age.
    pub queues: Vec<api::Queue>,
    pub executors: Vec<api::ExecutorStatus>,
    /// Newest first, every state.
    pub recent: Vec<api::ProcessSummary>,
    /// Most recently failed first.
    pub failed: Vec<api::ProcessSummary>,
    /// The graphs of the newest workflows among `recent` (as `GET /v1/workflows/{id}`).
    pub workflows: Vec<Value>,
}

impl Snapshot {
    /// The snapshot as `admin` may see it: only the colonies its token reaches.
    pub fn json_for(&self, admin: &Admin, everything: &Arc<str>) -> Arc<str> {
        if admin.colonies.is_none() {
            return everything.clone();
        }
        let mut mine = Snapshot {
            colonies: Vec::new(),
            ..self.clone()
        };
        mine.colonies = self
            .colonies
            .iter()
            .filter(|c| admin.reaches(&c.colony.name))
            .cloned()
            .collect();
        serde_json::to_string(&mine)
            .unwrap_or_else(|_| "{}".into())
            .into()
    }
}

/// A published snapshot and its JSON for admins of every colony (serialized once).
#[derive(Debug)]
pub struct Published {
    pub snapshot: Snapshot,
    pub everything: Arc<str>,
}

/// The replica's publisher, started by its first viewer.
#[derive(Default)]
pub struct Hub {
    started: OnceLock<Started>,
}

struct Started {
    snapshots: watch::Receiver<Option<Arc<Published>>>,
    /// A viewer arrived: refresh now if the snapshot is more than a period old.
    joined: Arc<Notify>,
}

impl Hub {
    /// The snapshots from now on (the current one first, if any); starts the publisher on first
    /// use. A `watch` and not a queue: a viewer that falls behind skips to the newest snapshot.
    pub fn subscribe(&self, state: &AppState) -> watch::Receiver<Option<Arc<Published>>> {
        let started = self.started.get_or_init(|| {
            let (sender, snapshots) = watch::channel(None);
            let joined = Arc::new(Notify::new());
            tokio::spawn(publish(state.clone(), sender, joined.clone()));
            Started { snapshots, joined }
        });
        started.joined.notify_one();
        let mut snapshots = started.snapshots.clone();
        snapshots.mark_changed();
        snapshots
    }
}

/// The publisher: samples the metrics every second for the whole life of the replica (so the
/// history is there when a viewer arrives), and queries the database only for viewers.
async fn publish(
    state: AppState,
    sender: watch::Sender<Option<Arc<Published>>>,
    joined: Arc<Notify>,
) {
    // Subscribed only while someone watches (the notifier measures wake latencies only while
    // a receiver exists): taken when a viewer is seen, dropped when the last one has left.
    let mut wake_latencies: Option<broadcast::Receiver<Duration>> = None;
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut series = Series::default();
    let mut active = true;
    let mut last: Option<Instant> = None;
    let mut data = Snapshot::default();
    loop {
        let fresh_for_newcomer = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {
                active |= series.sample(&state.metrics.render());
                false
            }
            _ = joined.notified() => true,
            latency = next_latency(&mut wake_latencies) => {
                match latency {
                    Ok(latency) => series.wake(latency),
                    // Samples for a chart: the ones skipped are not missed much.
                    Err(RecvError::Lagged(_)) => {}
                    // The notifier is gone only when the replica stops.
                    Err(RecvError::Closed) => return,
                }
                continue;
            }
        };
        // Only the publisher's own receiver is left: nobody watches.
        if sender.receiver_count() <= 1 {
            wake_latencies = None;
            continue;
        }
        if wake_latencies.is_none() {
            wake_latencies = Some(state.notifier.wake_latencies());
        }
        let age = last.map(|at| at.elapsed());
        let due = match age {
            None => true,
            Some(age) if fresh_for_newcomer => age >= PERIOD,
            Some(age) => (active && age >= PERIOD) || age >= SLOW_REFRESH,
        };
        if !due {
            continue;
        }
        active = false;
        last = Some(Instant::now());
        match build(&state.db).await {
            Ok(colonies) => {
                data.colonies = colonies;
                data.error = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "dashboard snapshot failed");
                data.error = Some(e.to_string());
            }
        }
        data.at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        data.replica = state.config.replica_name();
        data.listener = state.notifier.connected();
        data.history = series.history();
        let everything: Arc<str> = serde_json::to_string(&data)
            .unwrap_or_else(|_| "{}".into())
            .into();
        sender.send_replace(Some(Arc::new(Published {
            snapshot: data.clone(),
            everything,
        })));
    }
}

/// The next wake latency, if subscribed; never otherwise.
async fn next_latency(
    receiver: &mut Option<broadcast::Receiver<Duration>>,
) -> Result<Duration, RecvError> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// The query set of one snapshot: the colonies, then per colony its stats, backlog,
/// executors, recent and failed processes, then the newest workflows' graphs. At most
/// [`QUERIES_IN_FLIGHT`] queries at once: `colony_view` runs its queries in sequence.
async fn build(db: &Db) -> Result<Vec<ColonyView>> {
    let colonies = db.list_colonies(None, None, MAX_COLONIES).await?.colonies;
    let views: Vec<Result<ColonyView>> = futures_util::stream::iter(colonies)
        .map(|colony| colony_view(db, colony))
        .buffered(QUERIES_IN_FLIGHT)
        .collect()
        .await;
    views.into_iter().collect()
}

async fn colony_view(db: &Db, colony: api::Colony) -> Result<ColonyView> {
    let name = colony.name.as_str();
    let page = |state: Option<i32>, order: &str, limit: i32| ProcessFilter {
        state,
        order: order.into(),
        limit,
        ..ProcessFilter::default()
    };
    let recent_filter = page(None, "submitted", RECENT);
    let failed_filter = page(Some(3), "ended", FAILED);
    // One query at a time per colony: `build` runs QUERIES_IN_FLIGHT colonies at once, so
    // that is the number of this snapshot's queries in flight (and of pool connections held).
    let stats = db.stats(name).await?;
    let queues = db.queues(name).await?;
    let executors = db.list_executors(name, None, MAX_EXECUTORS).await?;
    let recent = db.list_processes(name, &recent_filter).await?;
    let failed = db.list_processes(name, &failed_filter).await?;
    let mut seen = BTreeSet::new();
    let ids: Vec<i64> = recent
        .processes
        .iter()
        .filter_map(|p| p.workflow_id)
        .filter(|id| seen.insert(*id))
        .take(WORKFLOWS)
        .collect();
    let mut workflows = Vec::with_capacity(ids.len());
    for id in ids {
        match db.workflow(id).await {
            Ok(graph) => workflows.push(graph),
            // Deleted (retention) between the two queries: nothing to draw.
            Err(e) if e.sqlstate().as_deref() == Some("P0002") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ColonyView {
        colony,
        stats,
        queues,
        executors: executors.executors,
        recent: recent.processes,
        failed: failed.processes,
        workflows,
    })
}
