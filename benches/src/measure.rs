//! Latency histograms (HDR, microsecond resolution) and simple rates.

use hdrhistogram::Histogram;
use std::time::Duration;

/// Latencies of one kind, recorded in microseconds (1 µs .. 1 h, 3 significant digits).
#[derive(Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        let _ = self.0.record((d.as_micros() as u64).max(1));
    }
    pub fn merge(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }
    pub fn count(&self) -> u64 {
        self.0.len()
    }
    /// Percentile in milliseconds (q in 0..=100).
    pub fn p(&self, q: f64) -> f64 {
        self.0.value_at_percentile(q) as f64 / 1000.0
    }
    pub fn mean(&self) -> f64 {
        self.0.mean() / 1000.0
    }
    pub fn max(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count(), "mean_ms": self.mean(), "p50_ms": self.p(50.0),
            "p95_ms": self.p(95.0), "p99_ms": self.p(99.0), "max_ms": self.max(),
        })
    }
}

pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn rate(v: f64) -> String {
    format!("{v:.0}")
}

pub fn ratio(v: f64) -> String {
    format!("{v:.2}")
}
