//! `colony ps`: a colony's processes through the admin listing's keyset pages, once or
//! re-rendered with `--watch`.

use super::pages;
use crate::context::Context;
use crate::error::{Context as _, Result};
use crate::output::{self, or_dash, when};
use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use colony_client::{Client, ProcessFilter, ProcessOrder, ProcessSummary, State};
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Only processes in this state.
    #[arg(long, value_parser = state_arg())]
    state: Option<State>,
    /// Only processes for this executor type.
    #[arg(long = "type")]
    executor_type: Option<String>,
    /// Only processes that require this location.
    #[arg(long)]
    location: Option<String>,
    /// Only processes this executor runs or ran.
    #[arg(long)]
    executor: Option<String>,
    /// Only this workflow's processes.
    #[arg(long)]
    workflow: Option<i64>,
    /// Only from this time on: RFC 3339 (`2025-01-02T03:04:05Z`) or a time ago (`10m`, `2h`).
    /// Submission time, or end time with `--ended`.
    #[arg(long, value_parser = time_arg)]
    since: Option<String>,
    /// Only before this time (same forms as `--since`).
    #[arg(long, value_parser = time_arg)]
    until: Option<String>,
    /// Finished processes, most recently ended first (instead of newest submission first).
    #[arg(long)]
    ended: bool,
    /// Show at most this many processes (following pages as needed).
    #[arg(long, default_value_t = 50, conflicts_with = "all")]
    limit: usize,
    /// Show every matching process.
    #[arg(long)]
    all: bool,
    /// Processes per page asked of the coordinator (1..=1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    page_size: u32,
    /// Start after this cursor (the `next` of an earlier `--json` listing).
    #[arg(long)]
    after: Option<String>,
    /// Re-render every `--interval` until Ctrl-C.
    #[arg(long, short)]
    watch: bool,
    /// How often `--watch` re-renders, e.g. `2s`.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
}

/// `--state`: a state's name in lower case (`State`'s names), listed in `--help`.
fn state_arg() -> impl TypedValueParser<Value = State> {
    PossibleValuesParser::new(
        State::KNOWN.map(|s| PossibleValue::new(s.to_string().to_lowercase())),
    )
    .try_map(|name| name.parse::<State>())
}

/// RFC 3339 as given, or a duration ago turned into RFC 3339.
fn time_arg(text: &str) -> std::result::Result<String, String> {
    if text.contains('T') || text.contains('-') {
        return Ok(text.to_owned());
    }
    let ago = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is neither RFC 3339 nor a duration such as 10m: {e}"))?;
    let at = SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| format!("{text:?} is too long ago"))?;
    Ok(humantime::format_rfc3339_micros(at).to_string())
}

pub async fn run(ctx: &Context, args: PsArgs) -> Result<()> {
    let colony = ctx.colony()?;
    let admin = ctx.admin()?;
    let filter = ProcessFilter {
        state: args.state,
        executor_type: args.executor_type.clone(),
        location: args.location.clone(),
        executor: args.executor.clone(),
        workflow: args.workflow,
        since: args.since.clone(),
        until: args.until.clone(),
        order: if args.ended {
            ProcessOrder::Ended
        } else {
            ProcessOrder::Submitted
        },
        after: args.after.clone(),
        limit: Some(args.page_size),
    };
    let limit = if args.all { usize::MAX } else { args.limit };
    if !args.watch {
        let (processes, next) = list(&admin, colony, &filter, limit).await?;
        return render(ctx, &processes, next.as_deref());
    }
    let clear = std::io::stdout().is_terminal();
    // Registered once, before the first render: a Ctrl-C that arrives while a page loads is
    // kept for the next wait instead of lost.
    let mut interrupt = signal(SignalKind::interrupt()).context(|| "watch SIGINT".into())?;
    loop {
        let (processes, next) = tokio::select! {
            listed = list(&admin, colony, &filter, limit) => listed?,
            _ = interrupt.recv() => return Ok(()),
        };
        if clear {
            // Home and clear the screen, so each render replaces the last.
            print!("\x1b[H\x1b[2J");
        }
        if !ctx.json() {
            output::print_line(format_args!(
                "colony {colony}, every {}: {} (Ctrl-C to stop)",
                humantime::format_duration(args.interval),
                humantime::format_rfc3339_seconds(SystemTime::now())
            ))?;
        }
        render(ctx, &processes, next.as_deref())?;
        tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            _ = tokio::time::sleep(args.interval) => {}
        }
    }
}

/// Up to `limit` processes matching `filter`, following keyset pages; and the cursor after
/// the last one shown when more may follow.
async fn list(
    admin: &Client,
    colony: &str,
    filter: &ProcessFilter,
    limit: usize,
) -> Result<(Vec<ProcessSummary>, Option<String>)> {
    pages(limit, filter.after.clone(), |after, left| {
        let mut filter = ProcessFilter {
            after,
            ..filter.clone()
        };
        if let Some(page_size) = filter.limit
            && (left as u64) < u64::from(page_size)
        {
            // Ask for no more than is shown, so `next` resumes right after the last row.
            filter.limit = Some(left as u32);
        }
        async move {
            let page = admin
                .processes(colony, &filter)
                .await
                .context(|| format!("list processes of colony {colony}"))?;
            Ok((page.processes, page.next))
        }
    })
    .await
}

fn render(ctx: &Context, processes: &[ProcessSummary], next: Option<&str>) -> Result<()> {
    if ctx.json() {
        return output::print_json(&serde_json::json!({"processes": processes, "next": next}));
    }
    let mut table = output::table([
        "ID",
        "STATE",
        "FUNCNAME",
        "TYPE",
        "LOCATION",
        "EXECUTOR",
        "SUBMITTED",
        "ENDED",
        "WORKFLOW",
    ]);
    for p in processes {
        table.add_row([
            p.id.to_string(),
            p.state.to_string(),
            p.funcname.clone(),
            p.executor_type.clone(),
            or_dash(p.location.as_deref()),
            or_dash(p.assigned_executor.as_deref()),
            when(Some(&p.submitted_at)),
            when(p.ended_at.as_deref()),
            p.workflow_id.map_or("-".into(), |w| w.to_string()),
        ]);
    }
    output::print_table(&table)?;
    if next.is_some() {
        eprintln!("(more: --limit N, --all, or --after CURSOR with --json's next)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_ago() {
        assert_eq!(
            time_arg("2025-01-02T03:04:05Z").unwrap(),
            "2025-01-02T03:04:05Z"
        );
        let ago = time_arg("10m").unwrap();
        assert!(ago.ends_with('Z') && ago.contains('T'), "{ago}");
        assert!(time_arg("soon").is_err());
    }
}
