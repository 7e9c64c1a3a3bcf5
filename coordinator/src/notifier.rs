//! The notifier owns this replica's one LISTEN connection and the registry of parked
//! long-polls, and turns the extension's notifications into wake-ups of exactly the right
//! waiters.
//!
//! - A long-poll registers a [`Waiter`] on the executor's keys (its location key, its type's
//!   broadcast key, its name key) *before* its first assign, and stays registered until it
//!   answers; a wake that lands while it is assigning is kept as a permit, so nothing committed
//!   after registration can be missed.
//! - A notification (key K, count n) wakes at most n waiters parked on K that have no wake
//!   pending, oldest first; woken waiters move to the back (round robin across executors).
//! - Notifications are hints. After every (re)connect, and every `--catchup-interval`, the
//!   notifier asks the database which parked keys have assignable work and wakes that many
//!   waiters, so a lost notification costs at most one interval, never a full poll timeout.
//! - Waiters hold no database connection: only this task's one connection LISTENs.

use crate::auth::TokenCache;
use crate::config::Config;
use crate::db::{self, Db, Executor};
use crate::metrics as m;
use colony_proto::{CATCHUP_CHANNEL, CONTROL_CHANNEL, Key, executor_keys, parse_wake_payload};
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// How long a new long-poll waits for the LISTEN on a channel it is the first to need. Longer
/// only while the database is unreachable; the catch-up after reconnecting covers that case.
const LISTEN_CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);

/// A wake-up key with the attributes it stands for (the channel name alone is a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeKey {
    pub channel: String,
    pub colony: String,
    pub executor_type: String,
    /// Location of a location key; for a name key, the named executor's location.
    pub location: Option<String>,
    /// Set for name keys only.
    pub executor: Option<String>,
}

impl WakeKey {
    /// The keys an executor is woken on (DESIGN.md, Notifications).
    pub fn for_executor(e: &Executor) -> Vec<WakeKey> {
        executor_keys(&e.colony, &e.executor_type, e.location.as_deref(), &e.name)
            .into_iter()
            .map(|key| {
                let (location, executor) = match key {
                    Key::Location { location, .. } => (Some(location.to_owned()), None),
                    Key::Broadcast { .. } => (None, None),
                    Key::Name { executor, .. } => (e.location.clone(), Some(executor.to_owned())),
                };
                WakeKey {
                    channel: key.channel(),
                    colony: e.colony.clone(),
                    executor_type: e.executor_type.clone(),
                    location,
                    executor,
                }
            })
            .collect()
    }

    fn kind(&self) -> &'static str {
        match (&self.executor, &self.location) {
            (Some(_), _) => "name",
            (None, Some(_)) => "location",
            (None, None) => "broadcast",
        }
    }

    /// Whether an executor could take the work this key announces: what a wake must never get
    /// wrong (the seed's wrong-location wake-ups). Checked on every wake and counted.
    fn admits(&self, e: &Executor) -> bool {
        self.colony == e.colony
            && self.executor_type == e.executor_type
            && match (&self.executor, &self.location) {
                (Some(name), _) => *name == e.name,
                (None, Some(location)) => e.location.as_ref() == Some(location),
                (None, None) => true,
            }
    }
}

/// One parked long-poll.
pub struct Waiter {
    id: u64,
    executor: Executor,
    keys: Vec<String>,
    /// A wake was delivered and no assign attempt has started since.
    permit: AtomicBool,
    woken_by: Mutex<Option<String>>,
    revoked: AtomicBool,
    notify: Notify,
}

impl Waiter {
    fn try_wake(&self, channel: &str) -> bool {
        if self
            .permit
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        *lock(&self.woken_by) = Some(channel.to_owned());
        self.notify.notify_one();
        true
    }
}

/// A waiter's registration; dropping it (answer, timeout, client gone) unregisters at once.
pub struct Registration {
    inner: Arc<Inner>,
    waiter: Arc<Waiter>,
}

impl Registration {
    /// Call before each assign attempt: clears the pending wake (a wake arriving from now on
    /// triggers another attempt) and returns the channel that woke us, if any.
    pub fn begin_attempt(&self) -> Option<String> {
        self.waiter.permit.store(false, Ordering::Release);
        lock(&self.waiter.woken_by).take()
    }

    /// Resolves on the next wake (or revocation).
    pub async fn woken(&self) {
        self.waiter.notify.notified().await;
    }

    /// The executor was removed (or its colony) while it waited.
    pub fn revoked(&self) -> bool {
        self.waiter.revoked.load(Ordering::Acquire)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner.unregister(&self.waiter);
    }
}

enum ListenState {
    /// LISTEN not (or no longer) in effect.
    Unlistened,
    /// LISTEN sent or queued; these registrations wait for it.
    Requested(Vec<oneshot::Sender<()>>),
    Active,
}

struct Channel {
    key: WakeKey,
    waiters: VecDeque<Arc<Waiter>>,
    state: ListenState,
    empty_since: Option<Instant>,
}

#[derive(Default)]
struct Registry {
    channels: HashMap<String, Channel>,
}

enum Command {
    Listen(String),
}

struct Inner {
    registry: Mutex<Registry>,
    commands: mpsc::UnboundedSender<Command>,
    connected: AtomicBool,
    next_waiter: AtomicU64,
    catching_up: AtomicBool,
    db: Db,
    tokens: Arc<TokenCache>,
    config: Arc<Config>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The registry's critical sections do not panic; if one ever did, its data is still a
    // valid set of waiters, so keep serving rather than poisoning every later request.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Handle to the notifier; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

/// What /metrics reports about parked waiters.
pub struct Snapshot {
    pub waiters_by_kind: HashMap<&'static str, usize>,
    /// Location and broadcast keys only (name keys have at most one waiter each).
    pub waiters_by_key: Vec<(String, usize)>,
    pub listening: usize,
}

impl Notifier {
    /// Starts the LISTEN task. It connects in the background and keeps reconnecting; until
    /// it is connected, long-polls still work and are served by the catch-up.
    pub fn start(
        config: Arc<Config>,
        db: Db,
        tokens: Arc<TokenCache>,
        shutdown: CancellationToken,
    ) -> (Notifier, tokio::task::JoinHandle<()>) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            registry: Mutex::new(Registry::default()),
            commands,
            connected: AtomicBool::new(false),
            next_waiter: AtomicU64::new(1),
            catching_up: AtomicBool::new(false),
            db,
            tokens,
            config,
        });
        let task = tokio::spawn(run(inner.clone(), receiver, shutdown));
        (Notifier { inner }, task)
    }

    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// Registers a long-poll of `executor` on its keys and waits until LISTEN is in effect on
    /// each of them (bounded), so any work committed from now on is announced to it.
    pub async fn register(&self, executor: &Executor) -> Registration {
        let keys = WakeKey::for_executor(executor);
        let waiter = Arc::new(Waiter {
            id: self.inner.next_waiter.fetch_add(1, Ordering::Relaxed),
            executor: executor.clone(),
            keys: keys.iter().map(|k| k.channel.clone()).collect(),
            permit: AtomicBool::new(false),
            woken_by: Mutex::new(None),
            revoked: AtomicBool::new(false),
            notify: Notify::new(),
        });
        let mut confirmations = Vec::new();
        {
            let mut registry = lock(&self.inner.registry);
            for key in keys {
                let channel_name = key.channel.clone();
                let channel = registry
                    .channels
                    .entry(channel_name.clone())
                    .or_insert_with(|| Channel {
                        key,
                        waiters: VecDeque::new(),
                        state: ListenState::Unlistened,
                        empty_since: None,
                    });
                channel.waiters.push_back(waiter.clone());
                channel.empty_since = None;
                match &mut channel.state {
                    ListenState::Active => {}
                    ListenState::Requested(waiting) => {
                        let (tx, rx) = oneshot::channel();
                        waiting.push(tx);
                        confirmations.push(rx);
                    }
                    ListenState::Unlistened => {
                        let (tx, rx) = oneshot::channel();
                        channel.state = ListenState::Requested(vec![tx]);
                        confirmations.push(rx);
                        let _ = self.inner.commands.send(Command::Listen(channel_name));
                    }
                }
            }
        }
        let registration = Registration {
            inner: self.inner.clone(),
            waiter,
        };
        let _ = tokio::time::timeout(
            LISTEN_CONFIRM_TIMEOUT,
            futures_util::future::join_all(confirmations),
        )
        .await;
        registration
    }

    pub fn snapshot(&self) -> Snapshot {
        let registry = lock(&self.inner.registry);
        let mut snapshot = Snapshot {
            waiters_by_kind: HashMap::from([("location", 0), ("broadcast", 0), ("name", 0)]),
            waiters_by_key: Vec::new(),
            listening: 0,
        };
        for (name, channel) in &registry.channels {
            *snapshot
                .waiters_by_kind
                .entry(channel.key.kind())
                .or_default() += channel.waiters.len();
            if channel.key.executor.is_none() && !channel.waiters.is_empty() {
                snapshot
                    .waiters_by_key
                    .push((name.clone(), channel.waiters.len()));
            }
            if matches!(channel.state, ListenState::Active) {
                snapshot.listening += 1;
            }
        }
        snapshot
    }
}

impl Inner {
    /// Wakes up to `n` waiters on `channel` that have no wake pending; returns how many.
    fn wake(&self, registry: &mut Registry, channel: &str, n: u64, cause: &'static str) -> u64 {
        let Some(entry) = registry.channels.get_mut(channel) else {
            return 0;
        };
        let mut woken = Vec::new();
        for (index, waiter) in entry.waiters.iter().enumerate() {
            if woken.len() as u64 >= n {
                break;
            }
            if waiter.try_wake(channel) {
                if !entry.key.admits(&waiter.executor) {
                    metrics::counter!(m::WRONG_WAKES).increment(1);
                }
                woken.push(index);
            }
        }
        // Round robin: the woken go to the back, so the next wake picks someone else.
        for index in woken.iter().rev() {
            if let Some(waiter) = entry.waiters.remove(*index) {
                entry.waiters.push_back(waiter);
            }
        }
        let count = woken.len() as u64;
        if count > 0 {
            metrics::counter!(m::WAKES, "kind" => entry.key.kind(), "cause" => cause)
                .increment(count);
        }
        count
    }

    fn unregister(&self, waiter: &Waiter) {
        let mut registry = lock(&self.registry);
        for key in &waiter.keys {
            if let Some(channel) = registry.channels.get_mut(key) {
                channel.waiters.retain(|w| w.id != waiter.id);
                if channel.waiters.is_empty() {
                    channel.empty_since = Some(Instant::now());
                }
            }
        }
        // A wake delivered but never acted on (the client left first) is handed on, so the
        // work it announced is not left for the catch-up.
        if waiter.permit.load(Ordering::Acquire)
            && let Some(channel) = lock(&waiter.woken_by).take()
        {
            self.wake(&mut registry, &channel, 1, "handoff");
        }
    }

    fn dispatch(self: &Arc<Self>, channel: &str, payload: &str) {
        if channel == CONTROL_CHANNEL {
            self.control(payload);
            return;
        }
        if channel == CATCHUP_CHANNEL {
            // The database's relay dropped notifications (its table was full): look now.
            tokio::spawn(self.clone().catch_up("overflow"));
            return;
        }
        let n = parse_wake_payload(payload);
        let mut registry = lock(&self.registry);
        let kind = registry
            .channels
            .get(channel)
            .map(|c| c.key.kind())
            .unwrap_or("unknown");
        metrics::counter!(m::NOTIFICATIONS, "kind" => kind).increment(1);
        self.wake(&mut registry, channel, n, "notification");
    }

    /// Executor or colony removed: forget its tokens and answer its parked long-polls.
    fn control(&self, payload: &str) {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(payload) else {
            tracing::warn!(payload, "malformed control notification");
            return;
        };
        let colony = event["colony"].as_str().unwrap_or_default();
        let executor = event["executor"].as_str();
        match executor {
            Some(name) => self.tokens.forget_executor(colony, name),
            None => self.tokens.forget_colony(colony),
        }
        let registry = lock(&self.registry);
        for channel in registry.channels.values() {
            for waiter in &channel.waiters {
                if waiter.executor.colony == colony
                    && executor.is_none_or(|name| waiter.executor.name == name)
                    && !waiter.revoked.swap(true, Ordering::AcqRel)
                {
                    waiter.notify.notify_one();
                }
            }
        }
    }

    /// Channels to LISTEN on after (re)connecting: the control and catch-up channels and every
    /// channel someone waits on. Channels nobody waits on are forgotten.
    fn channels_to_relisten(&self) -> Vec<String> {
        let mut registry = lock(&self.registry);
        registry.channels.retain(|_, c| !c.waiters.is_empty());
        let mut names = vec![CONTROL_CHANNEL.to_owned(), CATCHUP_CHANNEL.to_owned()];
        for (name, channel) in registry.channels.iter_mut() {
            if let ListenState::Active | ListenState::Unlistened = channel.state {
                channel.state = ListenState::Requested(Vec::new());
            }
            names.push(name.clone());
        }
        names
    }

    fn mark_active(&self, names: &[String]) {
        let mut registry = lock(&self.registry);
        for name in names {
            if let Some(channel) = registry.channels.get_mut(name)
                && let ListenState::Requested(waiting) =
                    std::mem::replace(&mut channel.state, ListenState::Active)
            {
                for confirm in waiting {
                    let _ = confirm.send(());
                }
            }
        }
    }

    fn mark_all_unlistened(&self) {
        let mut registry = lock(&self.registry);
        for channel in registry.channels.values_mut() {
            if let ListenState::Active = channel.state {
                channel.state = ListenState::Unlistened;
            }
        }
    }

    /// Channels idle past `--unlisten-after`: removed from the registry, to be UNLISTENed.
    fn take_idle(&self) -> Vec<String> {
        let after = self.config.unlisten_after();
        let mut registry = lock(&self.registry);
        let idle: Vec<String> = registry
            .channels
            .iter()
            .filter(|(_, c)| {
                c.waiters.is_empty()
                    && matches!(c.state, ListenState::Active)
                    && c.empty_since.is_some_and(|t| t.elapsed() >= after)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &idle {
            registry.channels.remove(name);
        }
        idle
    }

    /// Wakes parked waiters for work no notification announced. At most one runs at a time.
    async fn catch_up(self: Arc<Self>, cause: &'static str) {
        if self.catching_up.swap(true, Ordering::AcqRel) {
            return;
        }
        let keys: Vec<WakeKey> = {
            let registry = lock(&self.registry);
            registry
                .channels
                .values()
                .filter(|c| c.waiters.iter().any(|w| !w.permit.load(Ordering::Acquire)))
                .map(|c| c.key.clone())
                .collect()
        };
        if !keys.is_empty() {
            let colonies: Vec<&str> = keys.iter().map(|k| k.colony.as_str()).collect();
            let types: Vec<&str> = keys.iter().map(|k| k.executor_type.as_str()).collect();
            let locations: Vec<Option<&str>> = keys.iter().map(|k| k.location.as_deref()).collect();
            let executors: Vec<Option<&str>> = keys.iter().map(|k| k.executor.as_deref()).collect();
            match self
                .db
                .backlog(&colonies, &types, &locations, &executors)
                .await
            {
                Ok(found) => {
                    let mut registry = lock(&self.registry);
                    for (index, waiting) in found {
                        if let Some(key) = keys.get(index) {
                            self.wake(&mut registry, &key.channel, waiting, cause);
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "catch-up check failed"),
            }
        }
        self.catching_up.store(false, Ordering::Release);
    }
}

/// Exponential backoff with jitter: 100 ms doubling to at most 2 s.
struct Backoff(u32);

impl Backoff {
    fn next(&mut self) -> Duration {
        let base = 100u64.saturating_mul(1 << self.0.min(5)).min(2000);
        self.0 += 1;
        Duration::from_millis(base / 2 + rand::random_range(0..=base / 2))
    }
}

enum Message {
    Notification(tokio_postgres::Notification),
}

/// Connects the LISTEN connection; its driver task forwards notifications until the
/// connection dies, then drops the sender (which is how the loop learns of it).
async fn connect(
    config: &Config,
) -> Result<(tokio_postgres::Client, mpsc::UnboundedReceiver<Message>), crate::error::Error> {
    let mut pg = db::pg_config(config)?;
    // Operators (and the fault tests) can tell this connection from the query pool.
    pg.application_name(format!(
        "colony-coordinator {} listen",
        config.replica_name()
    ));
    let (client, mut connection) = pg
        .connect(NoTls)
        .await
        .map_err(crate::error::Error::from_db)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(Message::Notification(n)).is_err() {
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

fn listen_sql(verb: &str, names: &[String]) -> String {
    // Channel names are ASCII from colony-proto (or the fixed control name): quoting is only
    // there so the identifier is taken verbatim.
    names
        .iter()
        .map(|n| format!("{verb} \"{}\";", n.replace('"', "\"\"")))
        .collect()
}

async fn run(
    inner: Arc<Inner>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff(0);
    let mut first = true;
    loop {
        let session = tokio::select! {
            _ = shutdown.cancelled() => return,
            session = connect(&inner.config) => session,
        };
        let (client, mut messages) = match session {
            Ok(session) => session,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection: cannot connect; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next()) => continue,
                }
            }
        };
        let names = inner.channels_to_relisten();
        if let Err(e) = client.batch_execute(&listen_sql("LISTEN", &names)).await {
            tracing::warn!(error = %e, "LISTEN failed; reconnecting");
            continue;
        }
        inner.mark_active(&names);
        inner.connected.store(true, Ordering::Release);
        metrics::gauge!(m::LISTENER_CONNECTED).set(1.0);
        if !first {
            metrics::counter!(m::LISTENER_RECONNECTS).increment(1);
            // Control notifications may have been missed while disconnected.
            inner.tokens.clear();
            tracing::info!(channels = names.len(), "LISTEN connection re-established");
        }
        first = false;
        backoff = Backoff(0);
        // Anything submitted while we were not listening is found here.
        tokio::spawn(inner.clone().catch_up("reconnect"));

        let reason = serve(&inner, &client, &mut messages, &mut commands, &shutdown).await;
        inner.connected.store(false, Ordering::Release);
        inner.mark_all_unlistened();
        metrics::gauge!(m::LISTENER_CONNECTED).set(0.0);
        match reason {
            None => return,
            Some(reason) => tracing::warn!(reason, "LISTEN connection lost; reconnecting"),
        }
    }
}

/// Serves one LISTEN connection until it fails (Some(reason)) or shutdown (None).
async fn serve(
    inner: &Arc<Inner>,
    client: &tokio_postgres::Client,
    messages: &mut mpsc::UnboundedReceiver<Message>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    shutdown: &CancellationToken,
) -> Option<&'static str> {
    let ping = inner.config.listen_ping();
    let mut ping_tick = tokio::time::interval(ping);
    let mut catchup_tick = tokio::time::interval(inner.config.catchup_interval());
    let mut sweep_tick = tokio::time::interval(Duration::from_secs(5));
    for tick in [&mut ping_tick, &mut catchup_tick, &mut sweep_tick] {
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            message = messages.recv() => match message {
                Some(Message::Notification(n)) => {
                    last_heard = Instant::now();
                    inner.dispatch(n.channel(), n.payload());
                }
                None => return Some("connection closed"),
            },
            command = commands.recv() => {
                let Some(Command::Listen(first)) = command else { return None };
                let mut names = vec![first];
                while let Ok(Command::Listen(more)) = commands.try_recv() {
                    names.push(more);
                }
                match tokio::time::timeout(ping * 2, client.batch_execute(&listen_sql("LISTEN", &names))).await {
                    Ok(Ok(())) => inner.mark_active(&names),
                    // The channels stay Requested; the reconnect LISTENs them.
                    _ => return Some("LISTEN did not complete"),
                }
                last_heard = Instant::now();
            }
            _ = ping_tick.tick() => {
                if last_heard.elapsed() >= ping {
                    match tokio::time::timeout(ping, client.simple_query("SELECT 1")).await {
                        Ok(Ok(_)) => last_heard = Instant::now(),
                        _ => return Some("ping unanswered"),
                    }
                }
            }
            _ = catchup_tick.tick() => {
                tokio::spawn(inner.clone().catch_up("catchup"));
            }
            _ = sweep_tick.tick() => {
                let idle = inner.take_idle();
                if !idle.is_empty()
                    && tokio::time::timeout(ping * 2, client.batch_execute(&listen_sql("UNLISTEN", &idle))).await.is_err() {
                    return Some("UNLISTEN did not complete");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executor(location: Option<&str>) -> Executor {
        Executor {
            colony: "c".into(),
            name: "e".into(),
            executor_type: "t".into(),
            location: location.map(Into::into),
        }
    }

    #[test]
    fn keys_admit_exactly_the_executors_that_could_take_the_work() {
        let at_a = executor(Some("A"));
        let keys = WakeKey::for_executor(&at_a);
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().all(|k| k.admits(&at_a)));
        let location_key = &keys[0];
        assert_eq!(location_key.kind(), "location");
        assert!(!location_key.admits(&executor(Some("B"))));
        assert!(!location_key.admits(&executor(None)));
        let broadcast = &keys[1];
        assert!(broadcast.admits(&executor(None)));
        let mut other_type = executor(Some("A"));
        other_type.executor_type = "u".into();
        assert!(!broadcast.admits(&other_type));
        let mut other_name = executor(Some("A"));
        other_name.name = "f".into();
        assert!(!keys[2].admits(&other_name));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff(0);
        let first = b.next();
        assert!(first <= Duration::from_millis(100));
        for _ in 0..10 {
            assert!(b.next() <= Duration::from_secs(2));
        }
    }
}
