//! Prometheus metrics: names, descriptions and the recorder. Parked-waiter gauges are computed
//! from the notifier's registry when /metrics is scraped, not updated on every park.
//!
//! `colony_parked_waiters_by_key` is written here rather than recorded: the recorder keeps
//! every series it was ever given, so the series of channels this replica no longer listens on
//! would stay forever (one per key ever seen). Written from the registry at each scrape, a
//! key's series exists exactly as long as its channel is listened on.

use metrics_exporter_prometheus::formatting::{
    sanitize_label_value, write_help_line, write_type_line,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub const NOTIFICATIONS: &str = "colony_notifications_received_total";
pub const WAKES: &str = "colony_wakes_total";
pub const WRONG_WAKES: &str = "colony_wrong_wakes_total";
pub const WAKE_OUTCOMES: &str = "colony_wake_outcomes_total";
pub const PARKED: &str = "colony_parked_waiters";
pub const PARKED_BY_KEY: &str = "colony_parked_waiters_by_key";
pub const LISTENING: &str = "colony_listen_channels";
pub const LISTENER_CONNECTED: &str = "colony_listener_connected";
pub const LISTENER_RECONNECTS: &str = "colony_listener_reconnects_total";
pub const ASSIGN_SECONDS: &str = "colony_assign_seconds";
pub const LONGPOLLS: &str = "colony_longpolls_total";
pub const RELEASED: &str = "colony_released_processes_total";
pub const DB_QUERIES: &str = "colony_db_queries_total";
pub const BATCH_SIZE: &str = "colony_batch_requests";
pub const QUEUE_OVERFLOWS: &str = "colony_queue_overflows_total";

const PARKED_BY_KEY_HELP: &str = "Long-polls parked per location or broadcast key (channel name) this replica listens on; the series goes when the channel is UNLISTENed.";

/// A recorder with this crate's histogram buckets, not installed anywhere: `install()` makes
/// it the process's global one; in-process tests keep theirs local
/// (`metrics::set_default_local_recorder`) and hand its `handle()` to the router.
pub fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(ASSIGN_SECONDS.into()),
            &[
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
        )
        .expect("bucket list is not empty")
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(BATCH_SIZE.into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
        )
        .expect("bucket list is not empty")
        .build_recorder()
}

/// Installs a [`recorder`] as the global recorder (once per process) and describes every
/// metric.
pub fn install() -> PrometheusHandle {
    let recorder = recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the metrics recorder is installed once");
    metrics::describe_counter!(
        NOTIFICATIONS,
        "Wake-up notifications received from PostgreSQL, by key kind."
    );
    metrics::describe_counter!(
        WAKES,
        "Parked long-polls woken, by key kind and cause (notification, catchup, reconnect, handoff)."
    );
    metrics::describe_counter!(
        WRONG_WAKES,
        "Wakes of an executor that could not take the announced work (wrong colony, type, location or name). Must stay 0."
    );
    metrics::describe_counter!(
        WAKE_OUTCOMES,
        "What a woken long-poll's assign got: assigned, or lost_race (another executor was faster)."
    );
    metrics::describe_gauge!(
        PARKED,
        "Long-polls parked on this replica, by the kind of key (each waits on up to 3 keys)."
    );
    metrics::describe_gauge!(
        LISTENING,
        "Channels this replica's LISTEN connection listens on."
    );
    metrics::describe_gauge!(LISTENER_CONNECTED, "1 while the LISTEN connection is up.");
    metrics::describe_counter!(
        LISTENER_RECONNECTS,
        "Times the LISTEN connection was re-established."
    );
    metrics::describe_histogram!(
        ASSIGN_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one colony_assign.assign() call."
    );
    metrics::describe_counter!(
        LONGPOLLS,
        "Answered long-polls, by result (assigned, timeout, shutdown, revoked, error)."
    );
    metrics::describe_histogram!(
        BATCH_SIZE,
        "Requests coalesced into one database call, by call (assign, close)."
    );
    metrics::describe_counter!(
        RELEASED,
        "Claimed processes given back because their long-poll response could not be delivered."
    );
    metrics::describe_counter!(
        QUEUE_OVERFLOWS,
        "Items dropped because an internal queue was full, by queue (notifications, listen_requests); each drop is recovered by a catch-up."
    );
    handle
}

/// Appends `colony_parked_waiters_by_key` in the text format, one series per `(channel,
/// waiters)`; nothing at all when there are none, as for a recorded metric without series.
pub fn render_parked_by_key(out: &mut String, by_key: &[(String, usize)]) {
    if by_key.is_empty() {
        return;
    }
    write_help_line(out, PARKED_BY_KEY, None, None, PARKED_BY_KEY_HELP);
    write_type_line(out, PARKED_BY_KEY, None, None, "gauge");
    for (channel, waiters) in by_key {
        let channel = sanitize_label_value(channel);
        out.push_str(&format!(
            "{PARKED_BY_KEY}{{channel=\"{channel}\"}} {waiters}\n"
        ));
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_by_key_renders_one_series_per_key_and_nothing_without_keys() {
        let mut text = String::new();
        render_parked_by_key(&mut text, &[]);
        assert_eq!(text, "");

        render_parked_by_key(&mut text, &[("ca_x".into(), 2), ("ca\"y".into(), 0)]);
        assert!(text.starts_with("# HELP colony_parked_waiters_by_key "));
        assert!(text.contains("# TYPE colony_parked_waiters_by_key gauge\n"));
        assert_eq!(
            testkit::metrics_text::sum(&text, PARKED_BY_KEY, &[("channel", "ca_x")]),
            2.0
        );
        assert!(text.contains("colony_parked_waiters_by_key{channel=\"ca\\\"y\"} 0\n"));
    }
}
