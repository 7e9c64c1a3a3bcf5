//! `colony submit`: one spec from the command line, or JSON lines streamed from a file or stdin
//! in batches, each batch one transaction under its own idempotency key, several in flight.

use crate::context::Context;
use crate::error::{CliError, Context as _, Result};
use crate::output;
use clap::Args;
use colony_client::{Client, Error as ClientError};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// One spec (a JSON object), or a JSON array of specs submitted together. Without it, specs
    /// are read as JSON lines (one object per line) from --file or stdin.
    #[arg(conflicts_with = "file")]
    spec: Option<String>,
    /// Read JSON lines from this file (`-` is stdin).
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// Specs per request (one transaction each).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch_size: u32,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    parallel: u32,
    /// Do not print the new process ids (the rate line still goes to stderr).
    #[arg(long, short)]
    quiet: bool,
}

/// A batch also ends before this many bytes of specs, well under the coordinators' default
/// 8 MiB body limit, so large specs never make a request too large.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// Specs read from consecutive lines, submitted in one request.
struct Batch {
    specs: Vec<Value>,
    /// The input line of each spec (1-based), for error messages.
    lines: Vec<u64>,
    /// Bytes of input read up to the end of this batch (the progress bar's position).
    read_to: u64,
}

/// What the reader thread sends: batches, then at most one error that ends the input.
type Read = std::result::Result<Batch, CliError>;

pub async fn run(ctx: &Context, args: SubmitArgs) -> Result<()> {
    let colony = ctx.colony()?.to_owned();
    let client = ctx.submitter()?;
    if let Some(text) = &args.spec {
        return submit_argument(ctx, &client, &colony, text).await;
    }
    let (source, length): (Box<dyn BufRead + Send>, Option<u64>) = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            let file = std::fs::File::open(path).context(|| format!("open {}", path.display()))?;
            let length = file.metadata().ok().map(|m| m.len());
            (Box::new(std::io::BufReader::new(file)), length)
        }
        _ => (Box::new(std::io::BufReader::new(std::io::stdin())), None),
    };
    let name = args
        .file
        .as_ref()
        .filter(|p| p.as_os_str() != "-")
        .map_or("stdin".to_owned(), |p| p.display().to_string());
    stream(ctx, &client, &colony, &args, source, length, &name).await
}

async fn submit_argument(ctx: &Context, client: &Client, colony: &str, text: &str) -> Result<()> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| CliError::Input(format!("the spec argument is not JSON: {e}")))?;
    let ids = match &value {
        Value::Object(_) => vec![
            client
                .submit(colony, &value)
                .await
                .context(|| format!("submit to colony {colony}"))?,
        ],
        Value::Array(specs) if specs.iter().all(Value::is_object) => client
            .submit_many(colony, specs)
            .await
            .context(|| format!("submit to colony {colony}"))?,
        _ => {
            return Err(CliError::Input(
                "the spec argument must be a JSON object or an array of objects".into(),
            ));
        }
    };
    if ctx.json() {
        return output::print_json(&serde_json::json!({ "ids": ids }));
    }
    for id in ids {
        output::print_line(id)?;
    }
    Ok(())
}

async fn stream(
    ctx: &Context,
    client: &Client,
    colony: &str,
    args: &SubmitArgs,
    source: Box<dyn BufRead + Send>,
    length: Option<u64>,
    name: &str,
) -> Result<()> {
    let started = Instant::now();
    let parallel = args.parallel as usize;
    let (tx, mut rx) = mpsc::channel::<Read>(parallel);
    let batch_size = args.batch_size as usize;
    let source_name = name.to_owned();
    // Reading and parsing are blocking work; a thread keeps them off the runtime and ahead of
    // the requests by at most `parallel` batches.
    let reader = std::thread::spawn(move || read_batches(source, &source_name, batch_size, tx));
    let progress = progress_bar(length);
    let mut in_flight = FuturesOrdered::new();
    let mut input_done = false;
    let mut failure: Option<CliError> = None;
    let mut submitted = 0u64;
    let mut batches = 0u64;
    let mut all_ids = Vec::new();
    loop {
        while failure.is_none() && !input_done && in_flight.len() < parallel {
            match rx.recv().await {
                // A task per batch: it runs while this loop waits for the next line, so a
                // slow producer on stdin never stalls (and times out) a request in flight.
                Some(Ok(batch)) => in_flight.push_back(tokio::spawn(submit_batch(
                    client.clone(),
                    colony.to_owned(),
                    batch,
                ))),
                Some(Err(e)) => failure = Some(e),
                None => input_done = true,
            }
        }
        // In flight batches finish even after a failure, so the count of what was submitted
        // is exact.
        let Some(joined) = in_flight.next().await else {
            break;
        };
        let (batch, result) = joined.expect("a submit task does not panic");
        match result {
            Ok(ids) => {
                submitted += ids.len() as u64;
                batches += 1;
                progress.set_position(if length.is_some() {
                    batch.read_to
                } else {
                    submitted
                });
                progress.set_message(format!("{submitted} submitted"));
                if ctx.json() {
                    all_ids.extend(ids);
                } else if !args.quiet {
                    let mut lines = String::with_capacity(ids.len() * 8);
                    for id in ids {
                        lines.push_str(&id.to_string());
                        lines.push('\n');
                    }
                    progress.suspend(|| print!("{lines}"));
                }
            }
            Err(e) => {
                failure.get_or_insert(refused(name, colony, &batch, e));
            }
        }
    }
    progress.finish_and_clear();
    drop(rx);
    let _ = reader.join();
    let seconds = started.elapsed().as_secs_f64();
    let rate = submitted as f64 / seconds.max(1e-9);
    if let Some(failure) = failure {
        eprintln!("{submitted} processes were submitted ({batches} batches) before the error");
        return Err(failure);
    }
    if ctx.json() {
        output::print_json(&serde_json::json!({
            "submitted": submitted,
            "batches": batches,
            "seconds": seconds,
            "per_second": rate.round(),
            "ids": all_ids,
        }))?;
    }
    eprintln!(
        "submitted {submitted} processes in {batches} batches in {seconds:.2} s ({:.0}/s)",
        rate
    );
    Ok(())
}

async fn submit_batch(
    client: Client,
    colony: String,
    batch: Batch,
) -> (Batch, std::result::Result<Vec<i64>, ClientError>) {
    // One key per batch (submit_many makes it): the client repeats it on every retry, so a
    // batch whose answer was lost is submitted once however often it is sent.
    let result = client.submit_many(&colony, &batch.specs).await;
    (batch, result)
}

/// The error of a refused batch, naming the input line when the coordinator named the spec
/// (`spec[i]: ...`).
fn refused(name: &str, colony: &str, batch: &Batch, error: ClientError) -> CliError {
    let first = batch.lines.first().copied().unwrap_or(0);
    let last = batch.lines.last().copied().unwrap_or(0);
    let line = match &error {
        ClientError::Api { message, .. } => message
            .strip_prefix("spec[")
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(i, _)| i.parse::<usize>().ok())
            .and_then(|i| batch.lines.get(i).copied()),
        _ => None,
    };
    let context = match line {
        Some(line) => format!(
            "{name}, line {line}: submit to colony {colony} refused the batch of lines {first}-{last} (none of it was submitted)"
        ),
        None => format!(
            "{name}: submit of lines {first}-{last} to colony {colony} failed (none of that batch was submitted)"
        ),
    };
    CliError::Client {
        context,
        source: error,
    }
}

/// Reads JSON lines into batches and sends them; stops at the first line that is not a JSON
/// object, sending an error that names it instead of the batch it would have been in.
fn read_batches(
    mut source: Box<dyn BufRead + Send>,
    name: &str,
    batch_size: usize,
    tx: mpsc::Sender<Read>,
) {
    let mut line = String::new();
    let mut number = 0u64;
    let mut read = 0u64;
    let mut batch = Batch {
        specs: Vec::with_capacity(batch_size),
        lines: Vec::with_capacity(batch_size),
        read_to: 0,
    };
    let mut batch_bytes = 0usize;
    loop {
        line.clear();
        let n = match source.read_line(&mut line) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.blocking_send(Err(CliError::Io {
                    context: format!("read {name} after line {number}"),
                    source: e,
                }));
                return;
            }
        };
        if n == 0 {
            break;
        }
        number += 1;
        read += n as u64;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let spec = match serde_json::from_str::<Value>(text) {
            Ok(spec @ Value::Object(_)) => spec,
            Ok(_) => {
                let _ = tx.blocking_send(Err(bad_line(name, number, "not a JSON object")));
                return;
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(bad_line(name, number, &e.to_string())));
                return;
            }
        };
        batch.specs.push(spec);
        batch.lines.push(number);
        batch_bytes += text.len();
        if batch.specs.len() >= batch_size || batch_bytes >= MAX_BATCH_BYTES {
            batch.read_to = read;
            let full = std::mem::replace(
                &mut batch,
                Batch {
                    specs: Vec::with_capacity(batch_size),
                    lines: Vec::with_capacity(batch_size),
                    read_to: 0,
                },
            );
            batch_bytes = 0;
            if tx.blocking_send(Ok(full)).is_err() {
                return;
            }
        }
    }
    if !batch.specs.is_empty() {
        batch.read_to = read;
        let _ = tx.blocking_send(Ok(batch));
    }
}

fn bad_line(name: &str, number: u64, why: &str) -> CliError {
    CliError::Input(format!(
        "{name}, line {number}: {why}; nothing from its batch on was submitted"
    ))
}

/// A bar over the input's bytes when its size is known, else a spinner counting processes.
/// indicatif draws only when stderr is a terminal.
fn progress_bar(length: Option<u64>) -> ProgressBar {
    match length {
        Some(length) => ProgressBar::new(length).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg} (eta {eta})",
            )
            .expect("a valid template"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg} ({per_sec})")
                .expect("a valid template"),
        ),
    }
}
