//! `colony colonies add|rm|ls` (admin token).

use super::pages;
use crate::context::Context;
use crate::error::{Context as _, Result};
use crate::output::{self, seconds, when};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ColoniesCommand {
    /// Add a colony.
    Add {
        /// Its name.
        name: String,
    },
    /// Remove a colony with its executors and processes.
    Rm {
        /// Its name.
        name: String,
    },
    /// List the colonies the admin token reaches.
    Ls,
}

pub async fn run(ctx: &Context, command: ColoniesCommand) -> Result<()> {
    let admin = ctx.admin()?;
    match command {
        ColoniesCommand::Add { name } => {
            admin
                .add_colony(&name)
                .await
                .context(|| format!("add colony {name}"))?;
            done(ctx, &name, "added")
        }
        ColoniesCommand::Rm { name } => {
            admin
                .remove_colony(&name)
                .await
                .context(|| format!("remove colony {name}"))?;
            done(ctx, &name, "removed")
        }
        ColoniesCommand::Ls => {
            let admin = &admin;
            let (colonies, _) = pages(usize::MAX, None, |after, _| async move {
                let page = admin
                    .colonies(after.as_deref(), Some(1000))
                    .await
                    .context(|| "list colonies".into())?;
                Ok((page.colonies, page.next))
            })
            .await?;
            if ctx.json() {
                return output::print_json(&colonies);
            }
            let mut table = output::table([
                "NAME",
                "PAUSED",
                "STRICT",
                "STALE AFTER",
                "RETENTION",
                "CREATED",
            ]);
            for c in &colonies {
                table.add_row([
                    c.name.clone(),
                    c.paused.to_string(),
                    c.strict.to_string(),
                    seconds(c.stale_after_s),
                    seconds(c.retention_s),
                    when(Some(&c.created_at)),
                ]);
            }
            output::print_table(&table)
        }
    }
}

fn done(ctx: &Context, name: &str, what: &str) -> Result<()> {
    if ctx.json() {
        return output::print_json(&serde_json::json!({ "name": name, what: true }));
    }
    output::print_line(format_args!("{what} colony {name}"))
}
