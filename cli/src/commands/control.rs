//! `colony pause|resume|stats`: a colony's switches and counts.

use crate::context::Context;
use crate::error::{Context as _, Result};
use crate::output::{self, or_dash, seconds, when};

pub async fn pause(ctx: &Context) -> Result<()> {
    let colony = ctx.colony()?;
    ctx.admin()?
        .pause(colony)
        .await
        .context(|| format!("pause colony {colony}"))?;
    switched(ctx, colony, true)
}

pub async fn resume(ctx: &Context) -> Result<()> {
    let colony = ctx.colony()?;
    ctx.admin()?
        .resume(colony)
        .await
        .context(|| format!("resume colony {colony}"))?;
    switched(ctx, colony, false)
}

fn switched(ctx: &Context, colony: &str, paused: bool) -> Result<()> {
    if ctx.json() {
        return output::print_json(&serde_json::json!({"colony": colony, "paused": paused}));
    }
    output::print_line(format_args!(
        "{} colony {colony}",
        if paused { "paused" } else { "resumed" }
    ))
}

pub async fn stats(ctx: &Context) -> Result<()> {
    let colony = ctx.colony()?;
    let client = ctx.reader()?;
    let stats = client
        .stats(colony)
        .await
        .context(|| format!("stats of colony {colony}"))?;
    // The backlog per (type, location) is an admin route; an executor token gets the counts.
    let queues = if ctx.has_admin_token() {
        Some(
            client
                .queues(colony)
                .await
                .context(|| format!("backlog of colony {colony}"))?,
        )
    } else {
        None
    };
    if ctx.json() {
        return output::print_json(&serde_json::json!({
            "colony": colony,
            "stats": stats,
            "queues": queues,
        }));
    }
    let mut table = output::table(["COLONY", "PAUSED", "STRICT", "EXECUTORS"]);
    table.add_row([
        colony.to_owned(),
        stats.paused.to_string(),
        stats.strict.to_string(),
        stats.executors.to_string(),
    ]);
    output::print_table(&table)?;
    output::print_line("")?;
    let mut table = output::table([
        "WAITING",
        "BLOCKED",
        "RUNNING",
        "SUCCESS",
        "FAILED",
        "CANCELLED",
    ]);
    table.add_row(
        [
            stats.waiting,
            stats.blocked,
            stats.running,
            stats.succeeded,
            stats.failed,
            stats.cancelled,
        ]
        .map(|n| n.to_string()),
    );
    output::print_table(&table)?;
    if let Some(queues) = queues.filter(|q| !q.is_empty()) {
        output::print_line("")?;
        let mut table = output::table(["TYPE", "LOCATION", "WAITING", "OLDEST", "AGE"]);
        for q in &queues {
            table.add_row([
                q.executor_type.clone(),
                or_dash(q.location.as_deref()),
                q.waiting.to_string(),
                when(Some(&q.oldest_submitted_at)),
                seconds(q.oldest_age_s),
            ]);
        }
        output::print_table(&table)?;
    }
    Ok(())
}
