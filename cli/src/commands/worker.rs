//! `colony worker`: an executor that long-polls the coordinators and runs a command per
//! process: the process on its stdin, its stdout the output, a non-zero exit a failure.
//! SIGINT/SIGTERM stop polling; running commands finish and are reported before it exits. A
//! second signal kills them and fails their processes instead.

use crate::context::Context;
use crate::error::{CliError, Context as _, Result};
use clap::Args;
use colony_client::{Client, Process};
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The executor type this worker runs. With --token it must be that executor's; with only
    /// --admin-token the worker registers an executor of this type (removed when it stops).
    #[arg(long = "type")]
    executor_type: String,
    /// Where this worker runs (like --type).
    #[arg(long)]
    location: Option<String>,
    /// Processes run at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    concurrency: u32,
    /// The name to register under when only --admin-token is given (default
    /// `worker-<type>-<pid>`).
    #[arg(long)]
    name: Option<String>,
    /// How long one long-poll waits for work before asking again, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    poll_timeout: Duration,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

/// How long stderr's end is kept for a failed process's error.
const STDERR_TAIL: usize = 4096;

/// Liveness while commands run longer than a colony's `stale_after`; skipped while every slot
/// is free (long-polls keep an idle worker alive on their own: each one refreshes it). Each
/// heartbeat also acknowledges the claim leases of the processes the client still holds
/// (`Client::heartbeat`).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

pub async fn run(ctx: &Context, args: WorkerArgs) -> Result<()> {
    let colony = ctx.colony()?.to_owned();
    let stop = Stop::default();
    watch_signals(stop.clone())?;
    let (client, registered) = executor(ctx, &colony, &args).await?;
    eprintln!(
        "colony worker: colony {colony}, type {}, location {}, concurrency {}: {}",
        args.executor_type,
        args.location.as_deref().unwrap_or("-"),
        args.concurrency,
        args.command.join(" ")
    );
    let result = work(&client, &colony, &args, &stop).await;
    if let Some(name) = registered {
        // Remove what we registered with the admin token; a failure leaves a stale executor
        // behind, which the reaper treats like any silent one.
        if let Err(e) = ctx.admin()?.remove_executor(&colony, &name).await {
            eprintln!("colony worker: could not remove executor {name}: {e}");
        }
    }
    result
}

/// The worker's client: with the executor token, or as an executor registered now with the
/// admin token (and its name, to remove at the end).
async fn executor(
    ctx: &Context,
    colony: &str,
    args: &WorkerArgs,
) -> Result<(Client, Option<String>)> {
    if ctx.has_token() {
        return Ok((ctx.executor()?, None));
    }
    if !ctx.has_admin_token() {
        return Err(CliError::Usage(
            "worker needs an executor token (--token, COLONY_TOKEN), or an admin token to register one"
                .into(),
        ));
    }
    let admin = ctx.admin()?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("worker-{}-{}", args.executor_type, std::process::id()));
    let created = admin
        .add_executor(colony, &name, &args.executor_type, args.location.as_deref())
        .await
        .context(|| format!("register executor {name} in colony {colony}"))?;
    eprintln!("colony worker: registered executor {name}");
    Ok((ctx.client(&created.token)?, Some(name)))
}

/// The two stages of stopping.
#[derive(Clone, Default)]
struct Stop {
    /// First signal: poll no more, let running commands finish.
    polling: CancellationToken,
    /// Second signal: kill running commands.
    now: CancellationToken,
}

/// Cancels `stop.polling` on the first SIGINT or SIGTERM, `stop.now` on the second.
fn watch_signals(stop: Stop) -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context(|| "watch SIGINT".into())?;
    let mut terminate = signal(SignalKind::terminate()).context(|| "watch SIGTERM".into())?;
    tokio::spawn(async move {
        for stage in [&stop.polling, &stop.now] {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            stage.cancel();
        }
    });
    Ok(())
}

async fn work(client: &Client, colony: &str, args: &WorkerArgs, stop: &Stop) -> Result<()> {
    let slots = Arc::new(Semaphore::new(args.concurrency as usize));
    let command = Arc::new(args.command.clone());
    let mut running = JoinSet::new();
    // Processes whose commands run (the slots a long-poll holds while it waits do not count).
    let busy = Arc::new(AtomicUsize::new(0));
    let heartbeat = tokio::spawn(heartbeats(client.clone(), busy.clone()));
    let mut outcome = Ok(());
    loop {
        while running.try_join_next().is_some() {}
        // A free slot first, then every other free one: one long-poll asks for all of them.
        let first = tokio::select! {
            biased;
            _ = stop.polling.cancelled() => break,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let mut permits = vec![first];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let assigned = tokio::select! {
            biased;
            // Dropping the long-poll loses nothing: a coordinator that cannot deliver what it
            // claimed gives it back.
            _ = stop.polling.cancelled() => break,
            assigned = client.assign(colony, args.poll_timeout, permits.len() as u32) => assigned,
        };
        match assigned {
            Ok(processes) => {
                for process in processes {
                    let permit = permits.pop().expect("no more processes than slots");
                    let (client, command) = (client.clone(), command.clone());
                    let killed = stop.now.clone();
                    let busy = Busy::new(&busy);
                    running.spawn(async move {
                        run_one(&client, &command, process, &killed).await;
                        drop((busy, permit));
                    });
                }
            }
            Err(e) if matches!(e.status(), Some(401 | 403 | 404)) => {
                outcome = Err(CliError::Client {
                    context: format!("long-poll in colony {colony}"),
                    source: e,
                });
                break;
            }
            Err(e) => {
                // Unavailable included: the client already tried every replica for its retry
                // budget, and a worker outlives coordinator outages.
                eprintln!("colony worker: long-poll failed: {e}; polling again in 1 s");
                tokio::select! {
                    _ = stop.polling.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    if !running.is_empty() {
        eprintln!(
            "colony worker: stopping; waiting for {} running process(es) (signal again to kill them)",
            running.len()
        );
    }
    let in_flight = running.len();
    while running.join_next().await.is_some() {}
    heartbeat.abort();
    eprintln!("colony worker: stopped");
    if stop.now.is_cancelled() && in_flight > 0 && outcome.is_ok() {
        return Err(CliError::Interrupted(format!(
            "stopped at once: the commands of up to {in_flight} process(es) were killed and their processes failed"
        )));
    }
    outcome
}

/// Counts one running process in `busy` while it lives (dropped when the task ends, however).
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(busy: &Arc<AtomicUsize>) -> Busy {
        busy.fetch_add(1, Ordering::Relaxed);
        Busy(busy.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A heartbeat every [`HEARTBEAT_EVERY`] while a process runs.
async fn heartbeats(client: Client, busy: Arc<AtomicUsize>) {
    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        if busy.load(Ordering::Relaxed) == 0 {
            continue;
        }
        if let Err(e) = client.heartbeat().await {
            eprintln!("colony worker: heartbeat failed: {e}");
        }
    }
}

/// Runs the command for `process` and closes or fails it; reports on stderr. When `killed` is
/// cancelled first, the command is killed (dropping it does) and the process failed.
async fn run_one(
    client: &Client,
    command: &[String],
    process: Process,
    killed: &CancellationToken,
) {
    let id = process.id;
    let started = Instant::now();
    let executed = tokio::select! {
        executed = execute(command, &process) => executed,
        _ = killed.cancelled() => Err(format!(
            "{} was killed: the worker was told to stop at once",
            command[0]
        )),
    };
    let report = match executed {
        Ok(output) => match client.close(id, output).await {
            Ok(()) => "SUCCESS".to_owned(),
            // Too large an output, or a process cancelled meanwhile: the first is still
            // this worker's to fail, the second is over.
            Err(e) if e.status() == Some(413) => {
                fail(client, id, format!("the command's output was refused: {e}")).await
            }
            Err(e) => format!("not closed: {e}"),
        },
        Err(why) => fail(client, id, why).await,
    };
    eprintln!(
        "colony worker: process {id}: {report} ({:.2} s)",
        started.elapsed().as_secs_f64()
    );
}

async fn fail(client: &Client, id: i64, why: String) -> String {
    match client.fail(id, &[why.as_str()]).await {
        Ok(()) => format!("FAILED: {}", why.lines().next().unwrap_or_default()),
        Err(e) => format!("not failed ({why}): {e}"),
    }
}

/// Runs `command` with the process on stdin: its output (`None` when stdout is empty), or the
/// error to fail it with.
async fn execute(
    command: &[String],
    process: &Process,
) -> std::result::Result<Option<Value>, String> {
    let stdin = json!({
        "id": process.id,
        "funcname": process.funcname,
        "args": process.args(),
        "kwargs": process.kwargs(),
        "input": process.input,
    });
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env("COLONY_PROCESS_ID", process.id.to_string())
        .env(
            "COLONY_FUNCNAME",
            process.funcname.as_deref().unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C at the terminal stops the worker's polling, not the
        // commands it lets finish.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", command[0]))?;
    let mut pipe = child.stdin.take().expect("stdin is piped");
    // Written beside the wait: a command that does not read all of it (or at all) must not
    // block on a full pipe, nor we on it.
    let writer = tokio::spawn(async move {
        let _ = pipe.write_all(stdin.to_string().as_bytes()).await;
        let _ = pipe.write_all(b"\n").await;
    });
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for {}: {e}", command[0]))?;
    let _ = writer.await;
    if !output.status.success() {
        let status = match output.status.code() {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".into(),
        };
        let stderr = tail(&output.stderr, STDERR_TAIL);
        return Err(if stderr.is_empty() {
            format!("{} failed with {status}", command[0])
        } else {
            format!("{} failed with {status}: {stderr}", command[0])
        });
    }
    Ok(parse_output(&output.stdout))
}

/// Stdout as JSON when it is JSON, else as a string; `None` when it is empty.
fn parse_output(stdout: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return None;
    }
    Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
}

/// The last `max` bytes of `bytes` as text, trimmed.
fn tail(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_is_json_or_a_string() {
        assert_eq!(parse_output(b"{\"a\": 1}\n"), Some(json!({"a": 1})));
        assert_eq!(parse_output(b"42"), Some(json!(42)));
        assert_eq!(parse_output(b"hello\n"), Some(json!("hello")));
        assert_eq!(parse_output(b"two\nlines\n"), Some(json!("two\nlines")));
        assert_eq!(parse_output(b" \n"), None);
    }

    #[test]
    fn the_tail_keeps_the_end() {
        assert_eq!(tail(b"abcdef\n", 3), "ef");
        assert_eq!(tail(b"abc", 10), "abc");
    }
}
