//! `colony get|logs|cancel ID`: one process.

use crate::context::Context;
use crate::error::{Context as _, Result};
use crate::output::{self, or_dash, when};
use clap::Args;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The process id.
    pub id: i64,
}

pub async fn get(ctx: &Context, args: IdArgs) -> Result<()> {
    let process = ctx
        .reader()?
        .process(args.id)
        .await
        .context(|| format!("get process {}", args.id))?;
    if ctx.json() {
        return output::print_json(&process);
    }
    let json = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(v) => v.to_string(),
    };
    let names = process.executor_names.as_ref().map(|n| n.join(","));
    let errors = process.errors.as_ref().map(|e| e.join("\n"));
    let mut table = output::table(["FIELD", "VALUE"]);
    for (field, value) in [
        ("id", process.id.to_string()),
        ("colony", process.colony.clone()),
        ("state", process.state.to_string()),
        ("funcname", or_dash(process.funcname.as_deref())),
        ("label", or_dash(process.label.as_deref())),
        ("executor type", process.executor_type.clone()),
        ("location", or_dash(process.location.as_deref())),
        ("executor names", or_dash(names.as_deref())),
        (
            "assigned executor",
            or_dash(process.assigned_executor.as_deref()),
        ),
        ("priority", process.priority.to_string()),
        ("retries", process.retries.to_string()),
        ("submitted", when(process.submitted_at.as_deref())),
        ("started", when(process.started_at.as_deref())),
        ("ended", when(process.ended_at.as_deref())),
        ("deadline", when(process.exec_deadline.as_deref())),
        (
            "workflow",
            process.workflow_id.map_or("-".into(), |w| {
                format!("{w} ({})", or_dash(process.nodename.as_deref()))
            }),
        ),
        ("spec", process.spec.to_string()),
        ("input", json(process.input.as_ref())),
        ("output", json(process.output.as_ref())),
        ("errors", or_dash(errors.as_deref())),
    ] {
        table.add_row([field.to_owned(), value]);
    }
    output::print_table(&table)
}

pub async fn logs(ctx: &Context, args: IdArgs) -> Result<()> {
    let lines = ctx
        .reader()?
        .logs(args.id)
        .await
        .context(|| format!("logs of process {}", args.id))?;
    if ctx.json() {
        return output::print_json(&lines);
    }
    for line in lines {
        output::print_line(format_args!(
            "{} [{}] {}",
            when(Some(&line.logged_at)),
            line.executor,
            line.message
        ))?;
    }
    Ok(())
}

pub async fn cancel(ctx: &Context, args: IdArgs) -> Result<()> {
    ctx.reader()?
        .cancel(args.id)
        .await
        .context(|| format!("cancel process {}", args.id))?;
    if ctx.json() {
        return output::print_json(&serde_json::json!({"id": args.id, "cancelled": true}));
    }
    output::print_line(format_args!("cancelled process {}", args.id))
}
