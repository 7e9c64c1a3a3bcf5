//! Which replica a call goes to (pure; unit-tested).
//!
//! - A client starts at a replica chosen round-robin (a process-wide counter plus a random
//!   offset), so that clients spread over the replicas.
//! - It stays on the last replica that answered ("sticky"): connections are reused and a
//!   healthy replica is never left for no reason.
//! - When a replica fails (see `retry.rs`), it is marked down, and the call moves on to the
//!   replicas after it in rotation order, those not marked down within the quarantine first.
//!   When several are candidates, their `GET /healthz` decides ([`pick`]).
//! - A replica marked down is still tried when nothing else is left, and is tried like any
//!   other once its quarantine has passed.

use std::time::{Duration, Instant};

/// The replicas' standing, as one client sees them.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Index of the replica the next call goes to (the last one that answered).
    preferred: usize,
    /// When each replica last failed, if it has not answered since.
    failed_at: Vec<Option<Instant>>,
    quarantine: Duration,
}

impl Rotation {
    /// `n` replicas (at least one), starting at `start % n`.
    pub fn new(n: usize, start: usize, quarantine: Duration) -> Rotation {
        assert!(n > 0, "at least one replica");
        Rotation {
            preferred: start % n,
            failed_at: vec![None; n],
            quarantine,
        }
    }

    /// The replica the next call starts on.
    pub fn preferred(&self) -> usize {
        self.preferred
    }

    /// Whether replica `i` failed within the quarantine before `now` and has not answered
    /// since.
    pub fn is_down(&self, i: usize, now: Instant) -> bool {
        self.failed_at[i].is_some_and(|at| now.saturating_duration_since(at) < self.quarantine)
    }

    /// Replica `i` answered: calls stay there.
    pub fn succeeded(&mut self, i: usize) {
        self.failed_at[i] = None;
        self.preferred = i;
    }

    /// Replica `i` failed at `now`. If calls were going there, they go to the next replica
    /// (in rotation order) that is not down, or simply the next one if all are.
    pub fn failed(&mut self, i: usize, now: Instant) {
        self.failed_at[i] = Some(now);
        if self.preferred == i {
            let n = self.failed_at.len();
            self.preferred = (1..=n)
                .map(|k| (i + k) % n)
                .find(|&j| !self.is_down(j, now))
                .unwrap_or((i + 1) % n);
        }
    }

    /// The replicas a call should consider, best first, leaving out `skip` (those it already
    /// tried in this round): in rotation order from the preferred one, those that are not down
    /// first, then those that are, the longest-failed first.
    pub fn candidates(&self, now: Instant, skip: &[bool]) -> Vec<usize> {
        let n = self.failed_at.len();
        let in_order = (0..n)
            .map(|k| (self.preferred + k) % n)
            .filter(|&i| !skip[i]);
        let (mut up, mut down): (Vec<usize>, Vec<usize>) =
            in_order.partition(|&i| !self.is_down(i, now));
        down.sort_by_key(|&i| self.failed_at[i]);
        up.append(&mut down);
        up
    }
}

/// What a `GET /healthz` said about a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// 200: the database answers and the replica listens for notifications.
    Healthy,
    /// Another status (503: its database or LISTEN connection is down): alive, but a last resort.
    Degraded,
    /// No answer within the health timeout.
    Dead,
}

/// Which candidate to use (an index into `results`, ranked best first), given the health
/// checks that have come back so far (`None`: still waiting). `all_in` says no more will
/// come (all answered, or the health timeout passed).
///
/// The best-ranked healthy candidate wins as soon as every better-ranked one is known not to
/// be healthy, so one slow or dead replica does not delay the choice; once all are in, the
/// first healthy, else the first degraded, else the first not known dead, else the first.
pub fn pick(results: &[Option<Health>], all_in: bool) -> Option<usize> {
    for (rank, result) in results.iter().enumerate() {
        match result {
            Some(Health::Healthy) => return Some(rank),
            Some(_) => continue,
            None if all_in => continue,
            None => return None,
        }
    }
    if !all_in {
        return None;
    }
    results
        .iter()
        .position(|r| *r == Some(Health::Degraded))
        .or_else(|| results.iter().position(Option::is_none))
        .or(if results.is_empty() { None } else { Some(0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_secs(5);

    #[test]
    fn starts_round_robin_and_stays_on_the_last_good_replica() {
        assert_eq!(Rotation::new(3, 0, Q).preferred(), 0);
        assert_eq!(Rotation::new(3, 4, Q).preferred(), 1);
        let mut r = Rotation::new(3, 1, Q);
        r.succeeded(1);
        assert_eq!(r.preferred(), 1);
        r.succeeded(2);
        assert_eq!(r.preferred(), 2);
    }

    #[test]
    fn a_failure_moves_calls_to_the_next_replica_that_is_up() {
        let now = Instant::now();
        let mut r = Rotation::new(3, 0, Q);
        r.failed(0, now);
        assert_eq!(r.preferred(), 1);
        assert!(r.is_down(0, now));
        r.failed(1, now);
        assert_eq!(r.preferred(), 2);
        // All down: simply the next one.
        r.failed(2, now);
        assert_eq!(r.preferred(), 0);
        // A failure of a replica calls are not going to does not move them.
        let mut r = Rotation::new(3, 0, Q);
        r.failed(2, now);
        assert_eq!(r.preferred(), 0);
        // Skips a replica that is still down.
        let mut r = Rotation::new(3, 0, Q);
        r.failed(1, now);
        r.failed(0, now);
        assert_eq!(r.preferred(), 2);
    }

    #[test]
    fn quarantine_ends_and_an_answer_clears_it() {
        let now = Instant::now();
        let mut r = Rotation::new(2, 0, Q);
        r.failed(0, now);
        assert!(r.is_down(0, now + Duration::from_secs(4)));
        assert!(!r.is_down(0, now + Q));
        r.failed(1, now);
        r.succeeded(1);
        assert!(!r.is_down(1, now));
        assert_eq!(r.preferred(), 1);
    }

    #[test]
    fn candidates_are_up_replicas_in_rotation_order_then_the_longest_down() {
        let now = Instant::now();
        let mut r = Rotation::new(4, 2, Q);
        let none = [false; 4];
        assert_eq!(r.candidates(now, &none), vec![2, 3, 0, 1]);
        r.failed(0, now);
        r.failed(3, now + Duration::from_millis(1));
        r.failed(2, now + Duration::from_millis(2));
        // Calls were going to 2; 3 and 0 are down, so they go to 1.
        assert_eq!(r.preferred(), 1);
        let later = now + Duration::from_millis(3);
        assert_eq!(r.candidates(later, &none), vec![1, 0, 3, 2]);
        assert_eq!(
            r.candidates(later, &[false, true, false, false]),
            vec![0, 3, 2]
        );
        assert_eq!(r.candidates(later, &[true; 4]), Vec::<usize>::new());
        // After the quarantine they are ordinary candidates again, in rotation order.
        assert_eq!(r.candidates(now + Q + Q, &none), vec![1, 2, 3, 0]);
    }

    #[test]
    fn pick_takes_the_best_ranked_healthy_replica_without_waiting_for_worse_ones() {
        use Health::*;
        assert_eq!(pick(&[None, None], false), None);
        assert_eq!(pick(&[Some(Healthy), None], false), Some(0));
        // A better-ranked one is still out: wait for it.
        assert_eq!(pick(&[None, Some(Healthy)], false), None);
        assert_eq!(pick(&[Some(Dead), Some(Healthy)], false), Some(1));
        assert_eq!(pick(&[Some(Degraded), Some(Healthy), None], false), Some(1));
        assert_eq!(pick(&[Some(Degraded), None], false), None);
    }

    #[test]
    fn pick_falls_back_when_all_are_in() {
        use Health::*;
        // The timeout passed with the first still silent: the healthy second one.
        assert_eq!(pick(&[None, Some(Healthy)], true), Some(1));
        assert_eq!(pick(&[Some(Dead), Some(Degraded)], true), Some(1));
        assert_eq!(pick(&[Some(Dead), None, Some(Dead)], true), Some(1));
        assert_eq!(pick(&[Some(Dead), Some(Dead)], true), Some(0));
        assert_eq!(pick(&[], true), None);
    }
}
