//! `colony`: the command-line client of colony_assign coordinators (docs/cli.md).

mod cli;
mod commands;
mod context;
mod error;
mod output;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version go to stdout and succeed; every usage error is exit code 1
            // (clap's own is 2, which here means "not found").
            return ExitCode::from(if e.use_stderr() {
                error::exit::OTHER
            } else {
                error::exit::OK
            });
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("colony: cannot start the async runtime: {e}");
            return ExitCode::from(error::exit::OTHER);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("colony: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
