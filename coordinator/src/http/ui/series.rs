//! The dashboard's throughput and latency history: one sample a second of this replica's own
//! metrics (the counters `/metrics` serves, read back from the recorder) and of the wake
//! latencies the notifier reports, kept in a ring buffer of the last few minutes. Nothing here
//! touches the database.

use crate::metrics as m;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Samples kept: five minutes at one a second.
pub const KEPT: usize = 300;

/// The counters a sample is made of, as totals since the replica started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    assigned: f64,
    closed: f64,
    notifications: f64,
    assign_seconds_sum: f64,
    assign_seconds_count: f64,
}

impl Totals {
    /// Reads the totals out of the Prometheus text `/metrics` serves.
    fn read(text: &str) -> Totals {
        Totals {
            // Long-polls answered with work (each with one process or more).
            assigned: sum(text, m::LONGPOLLS, &[("result", "assigned")]),
            // Close requests: every one goes through the coalesced close call, which records
            // how many requests it carried.
            closed: sum(
                text,
                &format!("{}_sum", m::BATCH_SIZE),
                &[("call", "close")],
            ),
            notifications: sum(text, m::NOTIFICATIONS, &[]),
            assign_seconds_sum: sum(text, &format!("{}_sum", m::ASSIGN_SECONDS), &[]),
            assign_seconds_count: sum(text, &format!("{}_count", m::ASSIGN_SECONDS), &[]),
        }
    }
}

/// The sum of every series of metric `name` whose labels include `labels` (exposition text).
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let matches = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The history as the dashboard draws it: one array per measure, oldest first, a second apart,
/// the last at `end_ms` (Unix milliseconds). Latencies are null in a second without any.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct History {
    pub end_ms: u64,
    pub step_s: u64,
    /// Long-polls answered with work, per second.
    pub assigned: Vec<f64>,
    /// Close requests, per second.
    pub closed: Vec<f64>,
    /// Wake notifications received, per second.
    pub notifications: Vec<f64>,
    /// Notification received → woken long-poll starts its assign, median and worst (ms).
    pub wake_p50_ms: Vec<Option<f64>>,
    pub wake_max_ms: Vec<Option<f64>>,
    /// Mean duration of an assign call (ms).
    pub assign_mean_ms: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    assigned: f64,
    closed: f64,
    notifications: f64,
    wake_p50_ms: Option<f64>,
    wake_max_ms: Option<f64>,
    assign_mean_ms: Option<f64>,
}

/// The ring buffer and what the current second has collected so far.
#[derive(Debug, Default)]
pub struct Series {
    samples: VecDeque<Sample>,
    previous: Option<Totals>,
    /// Wake latencies reported during the current second.
    wakes: Vec<Duration>,
    end_ms: u64,
}

impl Series {
    /// A wake latency the notifier reported.
    pub fn wake(&mut self, latency: Duration) {
        // Bounded: a second with more wakes than this is described well enough by these.
        if self.wakes.len() < 10_000 {
            self.wakes.push(latency);
        }
    }

    /// Closes the current second with the metrics `text` rendered now. Returns whether this
    /// replica assigned, closed or was notified of anything during it (a reason to refresh the
    /// snapshot).
    pub fn sample(&mut self, text: &str) -> bool {
        let now = Totals::read(text);
        // The first reading is the baseline: totals since start are not one second's worth.
        let before = self.previous.replace(now).unwrap_or(now);
        let delta = |a: f64, b: f64| (a - b).max(0.0);
        let assigns = delta(now.assign_seconds_count, before.assign_seconds_count);
        self.wakes.sort();
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let sample = Sample {
            assigned: delta(now.assigned, before.assigned),
            closed: delta(now.closed, before.closed),
            notifications: delta(now.notifications, before.notifications),
            wake_p50_ms: self.wakes.get(self.wakes.len() / 2).map(ms),
            wake_max_ms: self.wakes.last().map(ms),
            assign_mean_ms: (assigns > 0.0).then(|| {
                delta(now.assign_seconds_sum, before.assign_seconds_sum) * 1000.0 / assigns
            }),
        };
        self.wakes.clear();
        if self.samples.len() == KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        self.end_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        sample.assigned > 0.0 || sample.closed > 0.0 || sample.notifications > 0.0
    }

    pub fn history(&self) -> History {
        History {
            end_ms: self.end_ms,
            step_s: 1,
            assigned: self.samples.iter().map(|s| s.assigned).collect(),
            closed: self.samples.iter().map(|s| s.closed).collect(),
            notifications: self.samples.iter().map(|s| s.notifications).collect(),
            wake_p50_ms: self.samples.iter().map(|s| s.wake_p50_ms).collect(),
            wake_max_ms: self.samples.iter().map(|s| s.wake_max_ms).collect(),
            assign_mean_ms: self.samples.iter().map(|s| s.assign_mean_ms).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(assigned: u64, closed: u64, count: u64, seconds: f64) -> String {
        format!(
            "# TYPE colony_longpolls_total counter\n\
             colony_longpolls_total{{result=\"assigned\"}} {assigned}\n\
             colony_longpolls_total{{result=\"timeout\"}} 99\n\
             colony_batch_requests_sum{{call=\"close\"}} {closed}\n\
             colony_batch_requests_sum{{call=\"assign\"}} 77\n\
             colony_notifications_received_total{{kind=\"location\"}} 3\n\
             colony_notifications_received_total{{kind=\"name\"}} 1\n\
             colony_assign_seconds_sum {seconds}\n\
             colony_assign_seconds_count {count}\n"
        )
    }

    #[test]
    fn samples_are_per_second_deltas_of_the_metrics_and_the_ring_is_bounded() {
        let mut series = Series::default();
        // The first reading is a baseline, not a burst of everything since start.
        assert!(!series.sample(&text(10, 5, 4, 0.004)));
        series.wake(Duration::from_millis(3));
        series.wake(Duration::from_millis(1));
        series.wake(Duration::from_millis(2));
        assert!(series.sample(&text(13, 7, 6, 0.010)));
        let history = series.history();
        assert_eq!(history.assigned, [0.0, 3.0]);
        assert_eq!(history.closed, [0.0, 2.0]);
        assert_eq!(history.notifications, [0.0, 0.0]);
        assert_eq!(history.wake_p50_ms, [None, Some(2.0)]);
        assert_eq!(history.wake_max_ms, [None, Some(3.0)]);
        let mean = history.assign_mean_ms[1].unwrap();
        assert!((mean - 3.0).abs() < 1e-9, "{mean}");
        // A quiet second is no activity.
        assert!(!series.sample(&text(13, 7, 6, 0.010)));
        for _ in 0..KEPT + 5 {
            series.sample(&text(13, 7, 6, 0.010));
        }
        assert_eq!(series.history().assigned.len(), KEPT);
    }
}
