//! The command line: global options and one subcommand per command group (their arguments
//! live with their code, in commands/).

use crate::commands::{colonies, executors, process, ps, submit, worker, workflow};
use clap::{Args, Parser, Subcommand};
use colony_client::Url;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  usage error, bad input, or another error
  2  not found (colony, process, workflow, executor; or one the token does not reach)
  3  conflict or refused for now (already exists, already finished, too many long-polls)
  4  authentication or permission (missing, unknown or revoked token; wrong kind of token)
  5  unavailable (no coordinator replica answered in time, or the outcome is unknown)

Environment: COLONY_URLS, COLONY_TOKEN, COLONY_ADMIN_TOKEN, COLONY_COLONY (see the options).
Documentation: docs/cli.md.";

/// Command-line client of colony_assign coordinators: submit and inspect processes,
/// administer colonies and executors, and run shell commands as an executor.
#[derive(Debug, Parser)]
#[command(name = "colony", version, after_help = EXIT_CODES, arg_required_else_help = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the coordinators are, who we are, and how to print.
#[derive(Debug, Args)]
pub struct Global {
    /// Coordinator replica base URLs; repeat the option or separate with commas. Calls fail
    /// over between them.
    #[arg(
        long = "url",
        env = "COLONY_URLS",
        value_delimiter = ',',
        global = true,
        default_value = "http://127.0.0.1:8080",
        hide_env_values = true
    )]
    pub urls: Vec<Url>,
    /// Executor token (`cat_...`): submit, worker, and reads in its colony.
    #[arg(long, env = "COLONY_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Admin token (`caa_...`): colonies, executors, ps, pause/resume, and everything else in
    /// the colonies it reaches.
    #[arg(
        long,
        env = "COLONY_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// The colony to act in.
    #[arg(long, env = "COLONY_COLONY", global = true)]
    pub colony: Option<String>,
    /// Print JSON (one document on stdout) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long a call keeps trying replicas before it gives up (exit code 5), e.g. `30s`.
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_for: std::time::Duration,
    /// Start at the first --url and fail over down the list (default: start at a replica
    /// chosen at random, which spreads invocations over the replicas).
    #[arg(long, global = true)]
    pub in_order: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit processes: one spec as an argument, or JSON lines from a file or stdin.
    Submit(submit::SubmitArgs),
    /// List a colony's processes, newest first (admin token).
    Ps(ps::PsArgs),
    /// Show one process: state, spec, input, output, errors.
    Get(process::IdArgs),
    /// Show a process's log lines, oldest first.
    Logs(process::IdArgs),
    /// Cancel a waiting or running process.
    Cancel(process::IdArgs),
    /// Add, remove and list colonies (admin token).
    #[command(subcommand)]
    Colonies(colonies::ColoniesCommand),
    /// Add, remove and list a colony's executors (admin token).
    #[command(subcommand)]
    Executors(executors::ExecutorsCommand),
    /// Stop assigning processes in the colony (admin token).
    Pause,
    /// Resume assigning processes in the colony (admin token).
    Resume,
    /// A colony's counts per state and, with an admin token, its backlog per (type, location).
    Stats,
    /// Workflows.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// Run a shell command for every process assigned to an executor, until SIGINT/SIGTERM.
    Worker(worker::WorkerArgs),
}
