//! Reading the coordinator's `/metrics` (Prometheus text format) back, for the tests and the
//! benchmark harness, which both count wakes, parked waiters and notifications through it.

/// Sum of the samples of metric `name` whose labels include every `(key, value)` of `labels`
/// (all of the metric's series when `labels` is empty). Comment lines and samples that do not
/// parse are ignored; a metric that is absent sums to 0.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
            let wanted = metric == name
                && labels
                    .iter()
                    .all(|(key, val)| label_text.contains(&format!("{key}=\"{val}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::sum;

    const TEXT: &str = "\
# HELP colony_wakes_total Wakes.
# TYPE colony_wakes_total counter
colony_wakes_total{kind=\"location\",replica=\"a\"} 3
colony_wakes_total{kind=\"broadcast\",replica=\"a\"} 4
colony_wakes_total_other 100
colony_reconnects_total 2
";

    #[test]
    fn sums_the_series_whose_labels_match() {
        assert_eq!(sum(TEXT, "colony_wakes_total", &[]), 7.0);
        assert_eq!(
            sum(TEXT, "colony_wakes_total", &[("kind", "broadcast")]),
            4.0
        );
        assert_eq!(sum(TEXT, "colony_reconnects_total", &[]), 2.0);
    }

    #[test]
    fn an_absent_metric_or_label_sums_to_zero() {
        assert_eq!(sum(TEXT, "colony_wakes", &[]), 0.0);
        assert_eq!(sum(TEXT, "colony_wakes_total", &[("kind", "named")]), 0.0);
    }
}
