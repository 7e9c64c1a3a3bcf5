//! `colony executors add|rm|ls` in `--colony` (admin token).

use super::pages;
use crate::context::Context;
use crate::error::{Context as _, Result};
use crate::output::{self, or_dash, when};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ExecutorsCommand {
    /// Register an executor; prints its token, which is shown this once.
    Add {
        /// Its name, unique in the colony.
        name: String,
        /// The executor type it runs (processes name it in `conditions.executortype`).
        #[arg(long = "type")]
        executor_type: String,
        /// Where it runs (processes may require a location).
        #[arg(long)]
        location: Option<String>,
    },
    /// Remove an executor: its running processes go back to WAITING, its token stops working.
    Rm {
        /// Its name.
        name: String,
    },
    /// List the colony's executors with their liveness.
    Ls,
}

pub async fn run(ctx: &Context, command: ExecutorsCommand) -> Result<()> {
    let admin = ctx.admin()?;
    let colony = ctx.colony()?;
    match command {
        ExecutorsCommand::Add {
            name,
            executor_type,
            location,
        } => {
            let created = admin
                .add_executor(colony, &name, &executor_type, location.as_deref())
                .await
                .context(|| format!("add executor {name} to colony {colony}"))?;
            if ctx.json() {
                return output::print_json(&created);
            }
            // The token alone on stdout, so `TOKEN=$(colony executors add ...)` works; the
            // note goes to stderr.
            eprintln!(
                "added executor {} (type {}, location {}) to colony {}; its token is shown this once:",
                created.name,
                created.executor_type,
                or_dash(created.location.as_deref()),
                created.colony
            );
            output::print_line(&created.token)
        }
        ExecutorsCommand::Rm { name } => {
            admin
                .remove_executor(colony, &name)
                .await
                .context(|| format!("remove executor {name} from colony {colony}"))?;
            if ctx.json() {
                return output::print_json(
                    &serde_json::json!({"colony": colony, "name": name, "removed": true}),
                );
            }
            output::print_line(format_args!("removed executor {name} from colony {colony}"))
        }
        ExecutorsCommand::Ls => {
            let admin = &admin;
            let (executors, _) = pages(usize::MAX, None, |after, _| async move {
                let page = admin
                    .executors(colony, after.as_deref(), Some(1000))
                    .await
                    .context(|| format!("list executors of colony {colony}"))?;
                Ok((page.executors, page.next))
            })
            .await?;
            if ctx.json() {
                return output::print_json(&executors);
            }
            let mut table =
                output::table(["NAME", "TYPE", "LOCATION", "ALIVE", "RUNNING", "LAST SEEN"]);
            for e in &executors {
                table.add_row([
                    e.name.clone(),
                    e.executor_type.clone(),
                    or_dash(e.location.as_deref()),
                    e.alive.to_string(),
                    e.running.to_string(),
                    when(Some(&e.last_seen)),
                ]);
            }
            output::print_table(&table)
        }
    }
}
