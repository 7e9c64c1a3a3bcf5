//! How results are printed: tables for people (comfy-table), one JSON document for scripts
//! (`--json`), and the small formatting rules both share.

use crate::error::{Context as _, Result};
use colony_client::State;
use comfy_table::{Table, presets};
use serde::Serialize;
use std::io::Write;

/// A table in the style of `ps`/`kubectl`: a header row, columns separated by spaces, no
/// borders, so its lines stay greppable.
pub fn table<I, S>(header: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header);
    table
}

/// Prints `table` on stdout ([`table_lines`]).
pub fn print_table(table: &Table) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for line in table_lines(table) {
        writeln!(out, "{line}").context(|| "write to stdout".into())?;
    }
    Ok(())
}

/// `table`'s lines as printed: without trailing blanks, and the first column flush left
/// (NOTHING leaves one space of padding on each side of a cell).
fn table_lines(table: &Table) -> impl Iterator<Item = String> {
    table.lines().map(|line| {
        let line = line.trim_end();
        line.strip_prefix(' ').unwrap_or(line).to_owned()
    })
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .context(|| "write to stdout".into())
}

/// Prints one line on stdout.
pub fn print_line(line: impl std::fmt::Display) -> Result<()> {
    writeln!(std::io::stdout().lock(), "{line}").context(|| "write to stdout".into())
}

/// A state given as the integer the coordinator sends in a workflow's JSON, by its name
/// (`State`'s `Display`).
pub fn state_name_of(value: &serde_json::Value) -> String {
    value
        .as_i64()
        .and_then(|n| i32::try_from(n).ok())
        .map(|n| State::from(n).to_string())
        .unwrap_or_else(|| "?".into())
}

/// An RFC 3339 timestamp shortened for a table: `2025-01-02 03:04:05` (UTC as sent; the
/// fraction and offset dropped). `-` when absent.
pub fn when(timestamp: Option<&str>) -> String {
    match timestamp {
        Some(t) if t.len() >= 19 => t[..19].replacen('T', " ", 1),
        Some(t) => t.to_owned(),
        None => "-".into(),
    }
}

/// An optional text for a table cell.
pub fn or_dash(text: Option<&str>) -> String {
    text.filter(|t| !t.is_empty()).unwrap_or("-").to_owned()
}

/// Seconds as `1h2m3s`-style text, whole seconds.
pub fn seconds(s: f64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(s.max(0.0).round() as u64))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cells() {
        assert_eq!(
            when(Some("2025-01-02T03:04:05.123456+00:00")),
            "2025-01-02 03:04:05"
        );
        assert_eq!(when(None), "-");
        assert_eq!(or_dash(Some("")), "-");
        assert_eq!(seconds(3723.4), "1h 2m 3s");
        assert_eq!(State::from(3).to_string(), "FAILED");
        assert_eq!(state_name_of(&serde_json::json!(7)), "STATE_7");
        assert_eq!(state_name_of(&serde_json::json!("x")), "?");
        assert_eq!(state_name_of(&serde_json::json!(4)), "CANCELLED");
    }

    #[test]
    fn tables_have_no_borders_or_trailing_blanks() {
        let mut t = table(["ID", "STATE"]);
        t.add_row(["1", "WAITING"]);
        t.add_row(["1234", "RUNNING"]);
        let lines: Vec<String> = table_lines(&t).collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("ID") && lines[0].contains("STATE"));
        assert!(!lines[0].contains('|'));
        // What print_table prints: flush left, no trailing blanks, columns aligned.
        assert_eq!(lines, ["ID    STATE", "1     WAITING", "1234  RUNNING"]);
        // The raw lines have what table_lines takes away.
        let raw: Vec<String> = t.lines().collect();
        assert!(raw[0].starts_with(' ') && raw[1].ends_with(' '), "{raw:?}");
    }
}
