//! One module per command group; [`run`] sends the parsed command to its module.

pub mod colonies;
pub mod control;
pub mod executors;
pub mod process;
pub mod ps;
pub mod submit;
pub mod worker;
pub mod workflow;

use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::error::Result;

pub async fn run(cli: Cli) -> Result<()> {
    let ctx = Context::new(cli.global);
    match cli.command {
        Command::Submit(args) => submit::run(&ctx, args).await,
        Command::Ps(args) => ps::run(&ctx, args).await,
        Command::Get(args) => process::get(&ctx, args).await,
        Command::Logs(args) => process::logs(&ctx, args).await,
        Command::Cancel(args) => process::cancel(&ctx, args).await,
        Command::Colonies(command) => colonies::run(&ctx, command).await,
        Command::Executors(command) => executors::run(&ctx, command).await,
        Command::Pause => control::pause(&ctx).await,
        Command::Resume => control::resume(&ctx).await,
        Command::Stats => control::stats(&ctx).await,
        Command::Workflow(command) => workflow::run(&ctx, command).await,
        Command::Worker(args) => worker::run(&ctx, args).await,
    }
}
