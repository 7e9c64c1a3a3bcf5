//! The registry of parked long-polls: which waiter waits on which key, which of them are due a
//! wake, who is woken next, and which channels the LISTEN connection must listen on. It is plain
//! data behind the notifier's one mutex, and every rule is a synchronous function of the
//! registry and its arguments (the clock included), so the rules are tested without a runtime,
//! a database or a LISTEN connection.
//!
//! - A waiter is parked on its executor's keys *before* its first assign and stays until it
//!   answers. A wake that lands while it is assigning is kept as its pending wake (a permit), so
//!   nothing committed after parking can be missed.
//! - A notification (key K, count n) wakes at most n waiters parked on K that have no wake
//!   pending, oldest first; the woken move to the back (round robin across executors).
//! - A waiter that leaves with its wake still pending hands it on to the next waiter of that key.
//! - Waiters of a removed executor (or colony) are revoked and told at once.
//! - One executor may have at most `--max-parked-per-executor` waiters at once.

use super::keys::WakeKey;
use crate::db::Executor;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// A parked waiter; ids grow in parking order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaiterId(u64);

/// What parking gives the long-poll.
pub struct Parked {
    pub id: WaiterId,
    /// Notified on each wake and on revocation.
    pub wake: Arc<Notify>,
    /// Channels no LISTEN was in effect or under way for: the LISTEN connection must be asked.
    pub to_listen: Vec<String>,
    /// One per channel whose LISTEN is not in effect yet; each resolves once it is.
    pub listen_confirmations: Vec<oneshot::Receiver<()>>,
}

/// The waiters one wake reached on one key.
#[derive(Debug, PartialEq, Eq)]
pub struct Wakes {
    /// The key's kind (`location`, `broadcast`, `name`), for metrics.
    pub kind: &'static str,
    /// In the order they were chosen.
    pub woken: Vec<WaiterId>,
    /// How many of the woken could not take the key's work; must stay 0.
    pub wrong: usize,
}

/// What /metrics reports about parked waiters.
pub struct Snapshot {
    pub waiters_by_kind: HashMap<&'static str, usize>,
    /// Every location and broadcast key this replica knows (listens on, or is about to), with
    /// its waiters (0 while it is idle); name keys are left out, one series per executor would
    /// be too many. A key is gone from here once its channel is UNLISTENed, and so is its series
    /// on /metrics.
    pub waiters_by_key: Vec<(String, usize)>,
    pub listening: usize,
}

/// The wake an assign attempt acts on ([`Registry::begin_attempt`]).
#[derive(Debug, PartialEq, Eq)]
pub struct PendingWake {
    /// The channel it came on.
    pub channel: String,
    /// When the notification that woke the waiter arrived, if its clock was started
    /// ([`Registry::time_wakes`]: only while the dashboard listens).
    pub at: Option<Instant>,
}

/// Parking was refused: the executor has this many waiters already.
#[derive(Debug, PartialEq, Eq)]
pub struct AtCapacity(pub usize);

struct Waiter {
    executor: Executor,
    channels: Vec<String>,
    /// The channel of a wake delivered since the waiter's last assign attempt began.
    pending_wake: Option<String>,
    /// When the notification behind `pending_wake` arrived, for the dashboard's wake latency.
    woken_at: Option<Instant>,
    revoked: bool,
    wake: Arc<Notify>,
}

enum ListenState {
    /// LISTEN not (or no longer) in effect.
    Unlistened,
    /// LISTEN sent or queued; these parked waiters wait for it.
    Requested(Vec<oneshot::Sender<()>>),
    Active,
}

struct Channel {
    key: WakeKey,
    /// Parked waiters, the next to wake first.
    queue: VecDeque<WaiterId>,
    listen: ListenState,
    /// When its last waiter left.
    empty_since: Option<Instant>,
}

#[derive(Default)]
pub struct Registry {
    channels: HashMap<String, Channel>,
    waiters: HashMap<WaiterId, Waiter>,
    /// Parked waiters per executor (colony, name); executors with none are not kept.
    per_executor: HashMap<(String, String), usize>,
    /// A LISTEN request found the LISTEN connection's queue full and was dropped; its channel
    /// is still `Requested` here, and the LISTEN connection picks it up from here instead.
    listen_requests_dropped: bool,
    next_id: u64,
    /// The last answer of [`Registry::keys_awaiting_work`], until a waiter parks, leaves, is
    /// woken or begins an attempt (what the answer depends on). At rest the catch-up asks once
    /// a second, and rebuilding the list each time dominated an idle replica's CPU (10,000
    /// parked executors: 10,001 keys, 40,000 small strings scattered over the heap copied per
    /// pass, 16-109 ms/s of CPU; cached: a few ms/s).
    awaiting_work: Option<Arc<Vec<WakeKey>>>,
}

impl Registry {
    /// Parks a long-poll of `executor` as `park` does, unless the executor has `limit` waiters
    /// parked already.
    pub fn park_within(&mut self, executor: &Executor, limit: usize) -> Result<Parked, AtCapacity> {
        let parked = self.parked_of(executor);
        if parked >= limit {
            return Err(AtCapacity(parked));
        }
        Ok(self.park(executor))
    }

    /// How many waiters `executor` has parked.
    pub fn parked_of(&self, executor: &Executor) -> usize {
        self.per_executor
            .get(&(executor.colony.clone(), executor.name.clone()))
            .copied()
            .unwrap_or(0)
    }

    /// Parks a long-poll of `executor` on each of its keys, behind the waiters already there.
    pub fn park(&mut self, executor: &Executor) -> Parked {
        self.awaiting_work = None;
        let id = WaiterId(self.next_id);
        self.next_id += 1;
        let wake = Arc::new(Notify::new());
        let mut channels = Vec::new();
        let mut to_listen = Vec::new();
        let mut listen_confirmations = Vec::new();
        for key in WakeKey::for_executor(executor) {
            let name = key.channel.clone();
            let channel = self
                .channels
                .entry(name.clone())
                .or_insert_with(|| Channel {
                    key,
                    queue: VecDeque::new(),
                    listen: ListenState::Unlistened,
                    empty_since: None,
                });
            channel.queue.push_back(id);
            channel.empty_since = None;
            match &mut channel.listen {
                ListenState::Active => {}
                ListenState::Requested(waiting) => {
                    let (confirm, confirmation) = oneshot::channel();
                    waiting.push(confirm);
                    listen_confirmations.push(confirmation);
                }
                ListenState::Unlistened => {
                    let (confirm, confirmation) = oneshot::channel();
                    channel.listen = ListenState::Requested(vec![confirm]);
                    listen_confirmations.push(confirmation);
                    to_listen.push(name.clone());
                }
            }
            channels.push(name);
        }
        *self
            .per_executor
            .entry((executor.colony.clone(), executor.name.clone()))
            .or_default() += 1;
        self.waiters.insert(
            id,
            Waiter {
                executor: executor.clone(),
                channels,
                pending_wake: None,
                woken_at: None,
                revoked: false,
                wake: wake.clone(),
            },
        );
        Parked {
            id,
            wake,
            to_listen,
            listen_confirmations,
        }
    }

    /// Called as an assign attempt begins: takes the pending wake (a wake arriving from now on
    /// triggers another attempt) and returns it, if any: its channel, and when it was timed.
    pub fn begin_attempt(&mut self, id: WaiterId) -> Option<PendingWake> {
        let waiter = self.waiters.get_mut(&id)?;
        let at = waiter.woken_at.take();
        let channel = waiter.pending_wake.take()?;
        self.awaiting_work = None;
        Some(PendingWake { channel, at })
    }

    /// Starts the wake-latency clock of each of `woken` (just woken by a notification that
    /// arrived `at`): their next [`Registry::begin_attempt`] returns it. A clock already running
    /// keeps its start. A waiter that leaves first takes its clock with it.
    pub fn time_wakes(&mut self, woken: &[WaiterId], at: Instant) {
        for id in woken {
            if let Some(waiter) = self.waiters.get_mut(id) {
                waiter.woken_at.get_or_insert(at);
            }
        }
    }

    pub fn is_revoked(&self, id: WaiterId) -> bool {
        self.waiters.get(&id).is_some_and(|w| w.revoked)
    }

    /// Removes a waiter that answered (or whose client left) at `now`. Returns the hand-off of
    /// its pending wake, if it had one.
    pub fn unpark(&mut self, id: WaiterId, now: Instant) -> Option<Wakes> {
        let waiter = self.waiters.remove(&id)?;
        self.awaiting_work = None;
        let owner = (waiter.executor.colony.clone(), waiter.executor.name.clone());
        if let Some(parked) = self.per_executor.get_mut(&owner) {
            *parked -= 1;
            if *parked == 0 {
                self.per_executor.remove(&owner);
            }
        }
        for name in &waiter.channels {
            if let Some(channel) = self.channels.get_mut(name) {
                channel.queue.retain(|w| *w != id);
                if channel.queue.is_empty() {
                    channel.empty_since = Some(now);
                }
            }
        }
        // A wake delivered but never acted on (the client left first) goes to the next waiter
        // of its key, so the work it announced is not left for the catch-up.
        self.wake(&waiter.pending_wake?, 1)
    }

    /// Wakes at most `n` waiters parked on `channel` that have no wake pending, oldest first,
    /// and moves them to the back. `None` when nobody waits on the channel any more.
    pub fn wake(&mut self, channel: &str, n: u64) -> Option<Wakes> {
        let Registry {
            channels,
            waiters,
            awaiting_work,
            ..
        } = self;
        let entry = channels.get_mut(channel)?;
        let mut woken = Vec::new();
        let mut passed_over = Vec::new();
        let mut wrong = 0;
        for id in &entry.queue {
            if woken.len() as u64 >= n {
                break;
            }
            match waiters.get_mut(id) {
                Some(waiter) if waiter.pending_wake.is_none() => {
                    waiter.pending_wake = Some(channel.to_owned());
                    *awaiting_work = None;
                    waiter.wake.notify_one();
                    if !entry.key.admits(&waiter.executor) {
                        wrong += 1;
                    }
                    woken.push(*id);
                }
                _ => passed_over.push(*id),
            }
        }
        // Round robin: the woken go to the back in the order they were chosen, so the next
        // wake picks someone else; those passed over keep their places at the front.
        entry.queue.drain(..woken.len() + passed_over.len());
        for id in passed_over.into_iter().rev() {
            entry.queue.push_front(id);
        }
        entry.queue.extend(&woken);
        Some(Wakes {
            kind: entry.key.kind(),
            woken,
            wrong,
        })
    }

    /// Revokes the waiters of every executor `removed` picks and wakes them, once each; returns
    /// the newly revoked.
    pub fn revoke(&mut self, removed: impl Fn(&Executor) -> bool) -> Vec<WaiterId> {
        let mut revoked: Vec<WaiterId> = self
            .waiters
            .iter_mut()
            .filter(|(_, waiter)| !waiter.revoked && removed(&waiter.executor))
            .map(|(id, waiter)| {
                waiter.revoked = true;
                waiter.wake.notify_one();
                *id
            })
            .collect();
        revoked.sort();
        revoked
    }

    /// The keys the catch-up asks about: those with a waiter that has no wake pending (in no
    /// particular order). Shared, and rebuilt only after something it depends on changed.
    pub fn keys_awaiting_work(&mut self) -> Arc<Vec<WakeKey>> {
        if let Some(keys) = &self.awaiting_work {
            return keys.clone();
        }
        let keys = Arc::new(self.compute_keys_awaiting_work());
        self.awaiting_work = Some(keys.clone());
        keys
    }

    fn compute_keys_awaiting_work(&self) -> Vec<WakeKey> {
        self.channels
            .values()
            .filter(|c| {
                c.queue.iter().any(|id| {
                    self.waiters
                        .get(id)
                        .is_some_and(|w| w.pending_wake.is_none())
                })
            })
            .map(|c| c.key.clone())
            .collect()
    }

    /// After (re)connecting: every channel someone waits on, each now requested. Channels
    /// nobody waits on are forgotten.
    pub fn channels_to_relisten(&mut self) -> Vec<String> {
        // Everything still requested is in the list, dropped requests included.
        self.listen_requests_dropped = false;
        self.channels.retain(|_, c| !c.queue.is_empty());
        let mut names = Vec::with_capacity(self.channels.len());
        for (name, channel) in self.channels.iter_mut() {
            if let ListenState::Active | ListenState::Unlistened = channel.listen {
                channel.listen = ListenState::Requested(Vec::new());
            }
            names.push(name.clone());
        }
        names
    }

    /// A LISTEN request for a channel just requested could not be queued (the queue to the LISTEN
    /// connection was full) and was dropped.
    pub fn listen_request_dropped(&mut self) {
        self.listen_requests_dropped = true;
    }

    /// If LISTEN requests were dropped since the last call: every channel still waiting for its
    /// LISTEN (some may be queued too; LISTENing a channel twice is harmless). The LISTEN
    /// connection calls this after each batch it took from the queue, so a dropped request is
    /// found at the latest after the batch that was queued when it was dropped.
    pub fn take_dropped_listen_requests(&mut self) -> Vec<String> {
        if !std::mem::take(&mut self.listen_requests_dropped) {
            return Vec::new();
        }
        self.channels
            .iter()
            .filter(|(_, c)| matches!(c.listen, ListenState::Requested(_)))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// LISTEN is in effect on `names`: the waiters waiting for it are told.
    pub fn mark_listening(&mut self, names: &[String]) {
        for name in names {
            if let Some(channel) = self.channels.get_mut(name)
                && let ListenState::Requested(waiting) =
                    std::mem::replace(&mut channel.listen, ListenState::Active)
            {
                for confirm in waiting {
                    // A waiter that stopped waiting for the confirmation does not need it.
                    let _ = confirm.send(());
                }
            }
        }
    }

    /// The LISTEN connection is gone. Requested channels stay requested: the next connection
    /// LISTENs them and confirms to their waiters. (Parked long-polls learn of the loss from
    /// the notifier's connection state, not from here: no waiter is woken.)
    pub fn mark_unlistened(&mut self) {
        for channel in self.channels.values_mut() {
            if let ListenState::Active = channel.listen {
                channel.listen = ListenState::Unlistened;
            }
        }
    }

    /// Channels nobody has waited on for `idle_for` by `now`: forgotten here, to be UNLISTENed.
    pub fn take_idle(&mut self, now: Instant, idle_for: Duration) -> Vec<String> {
        let idle: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| {
                c.queue.is_empty()
                    && matches!(c.listen, ListenState::Active)
                    && c.empty_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= idle_for)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &idle {
            self.channels.remove(name);
        }
        idle
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            waiters_by_kind: HashMap::from([("location", 0), ("broadcast", 0), ("name", 0)]),
            waiters_by_key: Vec::new(),
            listening: 0,
        };
        for (name, channel) in &self.channels {
            *snapshot
                .waiters_by_kind
                .entry(channel.key.kind())
                .or_default() += channel.queue.len();
            if channel.key.executor.is_none() {
                snapshot
                    .waiters_by_key
                    .push((name.clone(), channel.queue.len()));
            }
            if matches!(channel.listen, ListenState::Active) {
                snapshot.listening += 1;
            }
        }
        snapshot.waiters_by_key.sort_unstable();
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    /// An executor of colony `c`, type `t`, with no location: it parks on the broadcast key of
    /// `(c, t)` (shared by all of them) and on its own name key.
    fn executor(name: &str) -> Executor {
        Executor {
            colony: "c".into(),
            name: name.into(),
            executor_type: "t".into(),
            location: None,
        }
    }

    fn channel_of(executor: &Executor, kind: &str) -> String {
        WakeKey::for_executor(executor)
            .into_iter()
            .find(|k| k.kind() == kind)
            .unwrap()
            .channel
    }

    fn broadcast_channel() -> String {
        channel_of(&executor("any"), "broadcast")
    }

    fn park_all(registry: &mut Registry, names: &[&str]) -> Vec<Parked> {
        names.iter().map(|n| registry.park(&executor(n))).collect()
    }

    fn woken(registry: &mut Registry, channel: &str, n: u64) -> Vec<WaiterId> {
        registry.wake(channel, n).unwrap().woken
    }

    /// The channel of the wake an attempt begun now acts on.
    fn woken_by(registry: &mut Registry, id: WaiterId) -> Option<String> {
        registry.begin_attempt(id).map(|wake| wake.channel)
    }

    /// Whether the waiter's handle holds a notification (consuming it).
    fn was_notified(parked: &Parked) -> bool {
        parked.wake.notified().now_or_never().is_some()
    }

    #[test]
    fn a_count_of_n_wakes_at_most_n_waiters_without_a_pending_wake() {
        let mut registry = Registry::default();
        let parked = park_all(&mut registry, &["a", "b", "c"]);
        let channel = broadcast_channel();

        assert_eq!(
            woken(&mut registry, &channel, 2),
            vec![parked[0].id, parked[1].id]
        );
        // Two of three have a wake pending: a count of 5 finds only the third.
        assert_eq!(woken(&mut registry, &channel, 5), vec![parked[2].id]);
        assert_eq!(woken(&mut registry, &channel, 5), vec![]);
        assert!(parked.iter().all(was_notified));
        assert_eq!(
            registry.keys_awaiting_work().len(),
            0,
            "every key's waiters have a wake pending, so the catch-up has nothing to ask"
        );

        registry.begin_attempt(parked[1].id);
        assert_eq!(woken(&mut registry, &channel, 5), vec![parked[1].id]);
    }

    #[test]
    fn a_wake_during_an_assign_attempt_is_kept_as_a_permit() {
        let mut registry = Registry::default();
        let parked = registry.park(&executor("a"));
        let channel = broadcast_channel();

        assert_eq!(registry.begin_attempt(parked.id), None);
        // The assign is running: the wake cannot be acted on now, so it is kept.
        assert_eq!(woken(&mut registry, &channel, 1), vec![parked.id]);
        assert!(was_notified(&parked), "the next wait returns at once");
        assert_eq!(woken_by(&mut registry, parked.id), Some(channel.clone()));
        assert_eq!(
            registry.begin_attempt(parked.id),
            None,
            "a permit is used once"
        );
    }

    #[test]
    fn a_waiter_leaving_with_a_pending_wake_hands_it_to_the_next_waiter_of_the_key() {
        let mut registry = Registry::default();
        let parked = park_all(&mut registry, &["a", "b", "c"]);
        let channel = broadcast_channel();
        let now = Instant::now();

        assert_eq!(woken(&mut registry, &channel, 1), vec![parked[0].id]);
        let handoff = registry.unpark(parked[0].id, now).unwrap();
        assert_eq!(handoff.woken, vec![parked[1].id]);
        assert_eq!(handoff.kind, "broadcast");
        // b acts on the handed-on wake (begins an attempt), so it has nothing to hand on.
        assert_eq!(woken_by(&mut registry, parked[1].id), Some(channel.clone()));
        assert_eq!(registry.unpark(parked[1].id, now), None);
        assert_eq!(registry.begin_attempt(parked[2].id), None);
        assert_eq!(registry.snapshot().waiters_by_kind["broadcast"], 1);
    }

    #[test]
    fn a_handed_on_wake_stays_on_its_key() {
        let mut registry = Registry::default();
        let mut at_x = executor("a");
        at_x.location = Some("X".into());
        let first = registry.park(&at_x);
        let elsewhere = registry.park(&Executor {
            location: Some("Y".into()),
            ..executor("b")
        });
        let second = registry.park(&Executor {
            name: "c".into(),
            ..at_x.clone()
        });
        let x_channel = channel_of(&at_x, "location");

        assert_eq!(woken(&mut registry, &x_channel, 1), vec![first.id]);
        let handoff = registry.unpark(first.id, Instant::now()).unwrap();
        assert_eq!(handoff.kind, "location");
        assert_eq!(handoff.woken, vec![second.id]);
        assert!(!was_notified(&elsewhere));
    }

    #[test]
    fn oldest_first_then_round_robin() {
        let mut registry = Registry::default();
        let parked = park_all(&mut registry, &["a", "b", "c", "d"]);
        let ids: Vec<WaiterId> = parked.iter().map(|p| p.id).collect();
        let channel = broadcast_channel();
        // Every waiter assigns (and finds nothing) between wakes, so none has a wake pending.
        let wake_after_attempts = |registry: &mut Registry, n| {
            for id in &ids {
                registry.begin_attempt(*id);
            }
            woken(registry, &channel, n)
        };

        assert_eq!(wake_after_attempts(&mut registry, 2), vec![ids[0], ids[1]]);
        assert_eq!(
            wake_after_attempts(&mut registry, 3),
            vec![ids[2], ids[3], ids[0]]
        );
        assert_eq!(
            wake_after_attempts(&mut registry, 4),
            vec![ids[1], ids[2], ids[3], ids[0]]
        );
    }

    #[test]
    fn waiters_with_a_pending_wake_keep_their_place() {
        let mut registry = Registry::default();
        let parked = park_all(&mut registry, &["a", "b", "c"]);
        let ids: Vec<WaiterId> = parked.iter().map(|p| p.id).collect();
        let channel = broadcast_channel();

        // b is still to act on a wake (from its name key, say), so a and c are chosen.
        registry.wake(&channel_of(&executor("b"), "name"), 1);
        assert_eq!(woken(&mut registry, &channel, 2), vec![ids[0], ids[2]]);
        for id in &ids {
            registry.begin_attempt(*id);
        }
        assert_eq!(
            woken(&mut registry, &channel, 1),
            vec![ids[1]],
            "b, passed over, is first in line"
        );
    }

    #[test]
    fn removed_executors_and_colonies_are_revoked_once() {
        let mut registry = Registry::default();
        let parked = park_all(&mut registry, &["a", "b"]);
        let other_colony = registry.park(&Executor {
            colony: "d".into(),
            ..executor("a")
        });

        let revoked = registry.revoke(|e| e.colony == "c" && e.name == "a");
        assert_eq!(revoked, vec![parked[0].id]);
        assert!(was_notified(&parked[0]));
        assert!(registry.is_revoked(parked[0].id));
        assert!(!registry.is_revoked(parked[1].id));

        let revoked = registry.revoke(|e| e.colony == "c");
        assert_eq!(revoked, vec![parked[1].id], "a is not told twice");
        assert!(!was_notified(&parked[0]));
        assert!(was_notified(&parked[1]));
        assert!(!registry.is_revoked(other_colony.id));
        assert!(!was_notified(&other_colony));
    }

    #[test]
    fn the_first_waiter_of_a_channel_requests_its_listen_and_all_are_confirmed() {
        let mut registry = Registry::default();
        let mut first = registry.park(&executor("a"));
        let mut second = registry.park(&executor("b"));
        let channel = broadcast_channel();

        assert_eq!(first.to_listen.len(), 2, "broadcast and name key");
        assert!(first.to_listen.contains(&channel));
        assert_eq!(
            second.to_listen.len(),
            1,
            "the broadcast key's LISTEN is already under way"
        );
        assert_eq!(second.listen_confirmations.len(), 2);

        registry.mark_listening(std::slice::from_ref(&channel));
        let confirmed = |parked: &mut Parked| {
            parked
                .listen_confirmations
                .iter_mut()
                .map(|confirmation| confirmation.try_recv())
                .filter(Result::is_ok)
                .count()
        };
        assert_eq!(confirmed(&mut first), 1);
        assert_eq!(confirmed(&mut second), 1);
        assert_eq!(registry.snapshot().listening, 1);

        let third = registry.park(&executor("a"));
        assert_eq!(
            third.to_listen,
            Vec::<String>::new(),
            "a's name key is requested"
        );
        assert_eq!(
            third.listen_confirmations.len(),
            1,
            "only a's name key is not in effect yet"
        );
    }

    #[test]
    fn channels_idle_long_enough_are_taken_for_unlisten() {
        let mut registry = Registry::default();
        let parked = registry.park(&executor("a"));
        let names = registry.channels_to_relisten();
        assert_eq!(names.len(), 2);
        registry.mark_listening(&names);
        let left = Instant::now();
        registry.unpark(parked.id, left);
        let idle_for = Duration::from_secs(60);

        assert!(
            registry
                .take_idle(left + Duration::from_secs(59), idle_for)
                .is_empty()
        );
        let mut idle = registry.take_idle(left + idle_for, idle_for);
        idle.sort();
        let mut expected = names;
        expected.sort();
        assert_eq!(idle, expected);
        assert_eq!(registry.snapshot().listening, 0);
    }

    #[test]
    fn an_executor_parks_at_most_its_limit_and_others_are_not_affected() {
        let mut registry = Registry::default();
        let a = executor("a");
        let first = registry.park_within(&a, 2).unwrap();
        let _second = registry.park_within(&a, 2).unwrap();
        assert_eq!(registry.park_within(&a, 2).err(), Some(AtCapacity(2)));
        assert!(
            registry.park_within(&executor("b"), 2).is_ok(),
            "the limit is per executor"
        );
        let same_name_elsewhere = Executor {
            colony: "d".into(),
            ..a.clone()
        };
        assert!(
            registry.park_within(&same_name_elsewhere, 2).is_ok(),
            "an executor is its colony and name"
        );
        assert_eq!(registry.parked_of(&a), 2);

        registry.unpark(first.id, Instant::now());
        assert_eq!(registry.parked_of(&a), 1);
        assert!(registry.park_within(&a, 2).is_ok(), "room again");
        assert_eq!(registry.park_within(&a, 2).err(), Some(AtCapacity(2)));
    }

    #[test]
    fn dropped_listen_requests_are_found_in_the_registry() {
        let mut registry = Registry::default();
        let listened = registry.park(&executor("a"));
        registry.mark_listening(&listened.to_listen);
        assert_eq!(
            registry.take_dropped_listen_requests(),
            Vec::<String>::new()
        );

        let requested = registry.park(&executor("b"));
        assert_eq!(requested.to_listen.len(), 1, "b's name key");
        registry.listen_request_dropped();
        assert_eq!(
            registry.take_dropped_listen_requests(),
            requested.to_listen,
            "only channels still waiting for their LISTEN"
        );
        assert_eq!(
            registry.take_dropped_listen_requests(),
            Vec::<String>::new(),
            "taken once"
        );

        registry.listen_request_dropped();
        registry.channels_to_relisten();
        assert_eq!(
            registry.take_dropped_listen_requests(),
            Vec::<String>::new(),
            "a reconnect LISTENs every requested channel anyway"
        );
    }

    /// The channels of the keys the catch-up would ask about now, sorted.
    fn awaiting(registry: &mut Registry) -> Vec<String> {
        let mut channels: Vec<String> = registry
            .keys_awaiting_work()
            .iter()
            .map(|k| k.channel.clone())
            .collect();
        channels.sort();
        channels
    }

    /// The cached answer is the one a fresh computation gives after every kind of change, and
    /// it is shared, not rebuilt, while nothing changes.
    #[test]
    fn the_catch_up_keys_follow_every_change_and_are_reused_while_nothing_changes() {
        let mut registry = Registry::default();
        let check = |registry: &mut Registry, what: &str| {
            let cached = awaiting(registry);
            let mut fresh: Vec<String> = registry
                .compute_keys_awaiting_work()
                .into_iter()
                .map(|k| k.channel)
                .collect();
            fresh.sort();
            assert_eq!(cached, fresh, "after {what}");
            cached
        };
        assert!(check(&mut registry, "nothing").is_empty());
        let a = registry.park(&executor("a"));
        let b = registry.park(&executor("b"));
        let all = check(&mut registry, "two parked");
        // a's and b's name keys, and the broadcast key they share (they have no location).
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(Arc::ptr_eq(
            &registry.keys_awaiting_work(),
            &registry.keys_awaiting_work()
        ));
        // Unchanged by what the answer does not depend on.
        let before = registry.keys_awaiting_work();
        registry.time_wakes(&[a.id], Instant::now());
        let names = registry.channels_to_relisten();
        registry.mark_listening(&names);
        registry.mark_unlistened();
        assert!(Arc::ptr_eq(&before, &registry.keys_awaiting_work()));

        // A wake takes a's name key out (its only waiter has a wake pending) ...
        let a_name = channel_of(&executor("a"), "name");
        assert_eq!(woken(&mut registry, &a_name, 1), vec![a.id]);
        let after_wake = check(&mut registry, "a wake");
        assert!(!after_wake.contains(&a_name));
        assert!(
            after_wake.contains(&broadcast_channel()),
            "b still waits there"
        );
        // ... and beginning its attempt puts it back.
        assert!(woken_by(&mut registry, a.id).is_some());
        assert_eq!(check(&mut registry, "an attempt"), all);
        // Leaving takes b's own keys out.
        registry.unpark(b.id, Instant::now());
        assert_eq!(check(&mut registry, "b left").len(), 2);
        registry.park(&executor("c"));
        assert_eq!(check(&mut registry, "c parked").len(), 3);
        registry.unpark(a.id, Instant::now());
        assert_eq!(check(&mut registry, "a left").len(), 2);
    }

    #[test]
    fn a_key_is_reported_until_its_channel_is_unlistened() {
        let mut registry = Registry::default();
        let parked = registry.park(&executor("a"));
        let names = registry.channels_to_relisten();
        registry.mark_listening(&names);
        let broadcast = broadcast_channel();
        assert_eq!(
            registry.snapshot().waiters_by_key,
            vec![(broadcast.clone(), 1)],
            "location and broadcast keys only"
        );

        let left = Instant::now();
        registry.unpark(parked.id, left);
        assert_eq!(
            registry.snapshot().waiters_by_key,
            vec![(broadcast, 0)],
            "idle, still listened: reported as 0"
        );
        let idle_for = Duration::from_secs(1);
        assert_eq!(registry.take_idle(left + idle_for, idle_for).len(), 2);
        assert!(registry.snapshot().waiters_by_key.is_empty());
    }

    #[test]
    fn a_timed_wake_returns_its_start_once_and_only_to_the_woken() {
        let mut registry = Registry::default();
        let parked = park_all(&mut registry, &["a", "b"]);
        let channel = broadcast_channel();
        let at = Instant::now();

        let first = woken(&mut registry, &channel, 1);
        registry.time_wakes(&first, at);
        registry.time_wakes(&first, at + Duration::from_millis(5));
        assert_eq!(
            registry.begin_attempt(parked[0].id),
            Some(PendingWake {
                channel: channel.clone(),
                at: Some(at)
            }),
            "the first wake started the clock"
        );
        assert_eq!(registry.begin_attempt(parked[0].id), None);
        // An untimed wake (nobody watching, the catch-up) carries no start.
        assert_eq!(woken(&mut registry, &channel, 1), vec![parked[1].id]);
        assert_eq!(
            registry.begin_attempt(parked[1].id),
            Some(PendingWake { channel, at: None })
        );
    }

    #[test]
    fn losing_the_listen_connection_wakes_nobody() {
        let mut registry = Registry::default();
        let parked = park_all(&mut registry, &["a", "b"]);
        let names = registry.channels_to_relisten();
        registry.mark_listening(&names);

        registry.mark_unlistened();
        assert!(
            !parked.iter().any(was_notified),
            "long-polls watch the connection state instead"
        );
        assert_eq!(registry.snapshot().listening, 0);
        assert_eq!(registry.begin_attempt(parked[0].id), None);
    }
}
