//! colony-chaos: the chaos run (docs/RELIABILITY.md). `scripts/chaos` starts a PostgreSQL
//! cluster and runs `colony-chaos run`, which starts coordinator replicas (each reaching
//! PostgreSQL through a fault proxy), executors (HTTP and SQL-direct tasks, and HTTP executors
//! as child processes — `colony-chaos executor` — that can be killed), submits processes at a
//! steady rate while injecting faults at random, drains, and checks every invariant from the
//! tables and the executors' own records. Exit status 1 on any violation.

mod check;
mod cluster;
mod executor;
mod faults;
mod plan;
mod records;
mod submit;

use clap::{Parser, Subcommand};
use cluster::{Postgres, Replica};
use plan::{COLONY, ExecutorPlan, Kind, Size};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use records::{Recorder, now_us};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "colony_assign chaos run (see docs/RELIABILITY.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The run itself.
    Run(RunArgs),
    /// An HTTP executor as a child process (started by `run`, killed with SIGKILL).
    Executor(ExecutorArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Port of the cluster (scripts/chaos starts it; the extension must be installed).
    #[arg(long)]
    pg_port: u16,
    /// Its data directory and log file (for pg_ctl restart).
    #[arg(long)]
    pg_data: PathBuf,
    #[arg(long)]
    pg_log: PathBuf,
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin")]
    pg_bin: PathBuf,
    /// The colony-coordinator binary.
    #[arg(long)]
    coordinator: PathBuf,
    /// Where replica logs and child executors' records go.
    #[arg(long)]
    work_dir: PathBuf,
    /// The CI-sized run (about 2-3 minutes) instead of the long one.
    #[arg(long)]
    short: bool,
    /// Seed of every random choice (printed at the start; pass it to repeat a run).
    #[arg(long)]
    seed: Option<u64>,
    /// Override the number of processes.
    #[arg(long)]
    processes: Option<usize>,
    /// Override how long submitting takes, in seconds.
    #[arg(long)]
    submit_secs: Option<u64>,
    /// Known defects to report without failing the run (docs/RELIABILITY.md): `stranded`,
    /// `close-misreported`.
    #[arg(long, value_delimiter = ',')]
    tolerate: Vec<String>,
}

#[derive(clap::Args)]
struct ExecutorArgs {
    #[arg(long)]
    name: String,
    #[arg(long)]
    token: String,
    #[arg(long, value_delimiter = ',')]
    replicas: Vec<colony_client::Url>,
    #[arg(long)]
    records: PathBuf,
    #[arg(long, default_value_t = 10)]
    long_poll_s: u64,
}

/// Long-poll timeout of every HTTP executor.
const LONG_POLL: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Command::Executor(args) => {
            let client = executor::http_client(&args.replicas, &args.token);
            let recorder = Recorder::file(&args.records).expect("open the records file");
            executor::run_http(
                args.name,
                client,
                recorder,
                Duration::from_secs(args.long_poll_s),
            )
            .await;
        }
        Command::Run(args) => std::process::exit(run(args).await),
    }
}

/// An executor of the run, as the runner keeps track of it.
struct Exec {
    plan: ExecutorPlan,
    recorder: Recorder,
    task: Option<tokio::task::JoinHandle<()>>,
    child: Option<tokio::process::Child>,
    records: Option<PathBuf>,
    killed: Option<i64>,
    /// Processes RUNNING for it when it was killed (their claims may never have been recorded).
    held: Vec<i64>,
}

struct Runner {
    pg: Postgres,
    replicas: Vec<Replica>,
    executors: Vec<Exec>,
    work_dir: PathBuf,
    started: Instant,
}

impl Runner {
    fn urls(&self) -> Vec<colony_client::Url> {
        self.replicas.iter().map(Replica::url).collect()
    }

    fn elapsed(&self) -> String {
        format!("{:7.1}s", self.started.elapsed().as_secs_f64())
    }

    async fn register(&self, plan: &ExecutorPlan) -> String {
        let admin = self.pg.admin().await;
        admin
            .query_one(
                "SELECT colony_assign.add_executor($1, $2, $3, $4)",
                &[&COLONY, &plan.name, &plan.executor_type, &plan.location],
            )
            .await
            .expect("add_executor")
            .get(0)
    }

    /// Registers and starts an executor.
    async fn spawn(&mut self, plan: ExecutorPlan) {
        let token = self.register(&plan).await;
        let mut exec = Exec {
            plan: plan.clone(),
            recorder: Recorder::memory(),
            task: None,
            child: None,
            records: None,
            killed: None,
            held: Vec::new(),
        };
        match plan.kind {
            Kind::Http => {
                let client = executor::http_client(&self.urls(), &token);
                exec.task = Some(tokio::spawn(executor::run_http(
                    plan.name.clone(),
                    client,
                    exec.recorder.clone(),
                    LONG_POLL,
                )));
            }
            Kind::Sql => {
                let sql = executor::SqlExecutor {
                    name: plan.name.clone(),
                    token,
                    config: executor::sql_config(self.pg.port, &plan.name),
                    recorder: exec.recorder.clone(),
                };
                exec.task = Some(tokio::spawn(sql.run()));
            }
            Kind::Child => {
                let records = self.work_dir.join(format!("{}.records", plan.name));
                let log = std::fs::File::create(self.work_dir.join(format!("{}.log", plan.name)))
                    .expect("child log");
                let urls: Vec<String> = self.urls().iter().map(|u| u.to_string()).collect();
                let child = tokio::process::Command::new(std::env::current_exe().unwrap())
                    .args(["executor", "--name", &plan.name, "--token", &token])
                    .args(["--replicas", &urls.join(",")])
                    .arg("--records")
                    .arg(&records)
                    .args(["--long-poll-s", &LONG_POLL.as_secs().to_string()])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(log)
                    .kill_on_drop(true)
                    .spawn()
                    .expect("start an executor child process");
                exec.child = Some(child);
                exec.records = Some(records);
            }
        }
        self.executors.push(exec);
    }

    /// `kill -9` of a child executor, preferably one holding work (waiting up to 3 s for one);
    /// a new executor of the same type and location takes its place.
    async fn kill_executor(&mut self, rng: &mut StdRng) -> faults::Injected {
        let live: Vec<usize> = (0..self.executors.len())
            .filter(|&i| self.executors[i].child.is_some())
            .collect();
        let names: Vec<String> = live
            .iter()
            .map(|&i| self.executors[i].plan.name.clone())
            .collect();
        let admin = self.pg.admin().await;
        let give_up = Instant::now() + Duration::from_secs(3);
        let mut holding: Option<(String, i64)> = None;
        while holding.is_none() && Instant::now() < give_up {
            holding = admin
                .query_opt(
                    "SELECT assigned_executor, count(*) FROM colony_assign.processes
                     WHERE state = 1 AND assigned_executor = ANY($1) GROUP BY 1
                     ORDER BY random() LIMIT 1",
                    &[&names],
                )
                .await
                .ok()
                .flatten()
                .map(|r| (r.get(0), r.get(1)));
            if holding.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let (victim, held) = match &holding {
            Some((name, n)) => (live[names.iter().position(|x| x == name).unwrap()], *n),
            None => (live[rng.random_range(0..live.len())], 0),
        };
        let start = now_us();
        let exec = &mut self.executors[victim];
        let mut child = exec.child.take().unwrap();
        if let Some(pid) = child.id() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = child.wait().await;
        exec.killed = Some(now_us());
        let name = exec.plan.name.clone();
        // What it held when it died: claims it may have received without recording them.
        exec.held = admin
            .query(
                "SELECT id FROM colony_assign.processes WHERE state = 1 AND assigned_executor = $1",
                &[&name],
            )
            .await
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default();
        let mut next = exec.plan.clone();
        let generation: u32 = name
            .rsplit("-g")
            .next()
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        next.name = format!(
            "{}-g{}",
            name.rsplit_once("-g").map_or(name.as_str(), |(p, _)| p),
            generation + 1
        );
        self.spawn(next).await;
        faults::Injected {
            fault: faults::Fault::KillExecutor,
            detail: format!("{name} holding {held} running processes"),
            start,
            end: now_us(),
            executor: Some(name),
        }
    }
}

async fn run(args: RunArgs) -> i32 {
    if let Some(unknown) = args
        .tolerate
        .iter()
        .find(|t| !["stranded", "close-misreported"].contains(&t.as_str()))
    {
        eprintln!("chaos: --tolerate {unknown}: not a known defect (stranded, close-misreported)");
        return 2;
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut size = if args.short {
        Size::short()
    } else {
        Size::long()
    };
    if let Some(n) = args.processes {
        size.processes = n;
    }
    if let Some(s) = args.submit_secs {
        size.submit_secs = s;
    }
    println!(
        "chaos: seed {seed} ({} run: {} replicas, {} executors = {} HTTP + {} SQL-direct + {} child processes, \
         {} processes over {} s); repeat with --seed {seed}",
        size.name,
        size.replicas,
        size.executors(),
        size.http_executors,
        size.sql_executors,
        size.child_executors,
        size.processes,
        size.submit_secs
    );
    let mut rng = StdRng::seed_from_u64(seed);
    std::fs::create_dir_all(&args.work_dir).expect("create the work dir");
    let pg = Postgres {
        port: args.pg_port,
        data: args.pg_data.clone(),
        log: args.pg_log.clone(),
        bin: args.pg_bin.clone(),
    };
    pg.setup().await;

    let mut runner = Runner {
        pg,
        replicas: Vec::new(),
        executors: Vec::new(),
        work_dir: args.work_dir.clone(),
        started: Instant::now(),
    };
    for i in 0..size.replicas {
        let mut replica = Replica::new(
            i,
            &runner.pg,
            args.coordinator.clone(),
            args.work_dir.join(format!("r{i}.log")),
        )
        .await;
        replica.start().await;
        runner.replicas.push(replica);
    }
    let plans = plan::executors(&size, &mut rng);
    let batches = plan::batches(&size, &plans, seed);
    for p in plans {
        runner.spawn(p).await;
    }

    // Submitters.
    let subs = Arc::new(submit::Submissions::new(
        batches,
        size.processes,
        Duration::from_secs(size.submit_secs),
        seed,
    ));
    let mut submitters = tokio::task::JoinSet::new();
    for i in 0..size.http_submitters {
        let plan = ExecutorPlan {
            name: format!("submitter{i}"),
            executor_type: "submitter",
            location: None,
            kind: Kind::Http,
        };
        let token = runner.register(&plan).await;
        let client = executor::http_client(&runner.urls(), &token);
        let subs = subs.clone();
        submitters.spawn(async move { submit::http(&subs, client).await });
    }
    for i in 0..size.sql_submitters {
        let plan = ExecutorPlan {
            name: format!("sql-submitter{i}"),
            executor_type: "submitter",
            location: None,
            kind: Kind::Sql,
        };
        let token = runner.register(&plan).await;
        let subs = subs.clone();
        let pg = Postgres {
            port: runner.pg.port,
            data: runner.pg.data.clone(),
            log: runner.pg.log.clone(),
            bin: runner.pg.bin.clone(),
        };
        submitters.spawn(async move { submit::sql(&subs, &pg, &token).await });
    }

    // Faults, one at a time, until every batch is submitted.
    let mut order = faults::ALL.to_vec();
    rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
    let mut injected: Vec<faults::Injected> = Vec::new();
    let progress_every = Duration::from_secs(10);
    let mut next_progress = Instant::now() + progress_every;
    loop {
        let gap =
            Duration::from_millis(rng.random_range(size.fault_gap_ms.0..=size.fault_gap_ms.1));
        // Wait out the whole gap, unless every submitter finishes first (one finishing early
        // must not cut the gap short: faults would then come back to back).
        let gap_ends = tokio::time::Instant::now() + gap;
        let mut done = false;
        while !done {
            tokio::select! {
                _ = tokio::time::sleep_until(gap_ends) => break,
                joined = submitters.join_next() => done = joined.is_none(),
            }
        }
        if done || submitters.is_empty() {
            break;
        }
        if Instant::now() >= next_progress {
            next_progress += progress_every;
            println!(
                "{} progress: {} of {} processes acknowledged",
                runner.elapsed(),
                subs.acked.lock().unwrap().len(),
                size.processes
            );
        }
        let fault = faults::draw(&mut rng, injected.len(), &order);
        let record = match fault {
            faults::Fault::KillExecutor => runner.kill_executor(&mut rng).await,
            _ => {
                faults::inject(
                    fault,
                    &mut rng,
                    &runner.pg,
                    &mut runner.replicas,
                    size.outage_ms,
                )
                .await
            }
        };
        println!(
            "{} fault: {}: {}",
            runner.elapsed(),
            fault.name(),
            record.detail
        );
        injected.push(record);
    }
    while submitters.join_next().await.is_some() {}
    println!(
        "{} submitted: {} processes acknowledged; faults stop, draining",
        runner.elapsed(),
        subs.acked.lock().unwrap().len()
    );

    // Drain: everything healed and running; wait until nothing is waiting or running, or
    // until nothing has moved for long enough that only a defect can explain what is left.
    for r in &mut runner.replicas {
        r.proxy.heal().await;
        if !r.running() {
            r.start().await;
        }
    }
    faults::resume(&runner.pg).await;
    let stall = Duration::from_secs(size.max_exec_s + cluster::STALE_AFTER_S as u64 + 30);
    let admin = runner.pg.admin().await;
    let mut last = (i64::MAX, Instant::now());
    loop {
        let open: i64 = admin
            .query_one(
                "SELECT count(*) FROM colony_assign.processes WHERE state IN (0, 1)",
                &[],
            )
            .await
            .expect("count unfinished processes")
            .get(0);
        if open == 0 {
            break;
        }
        if open < last.0 {
            last = (open, Instant::now());
        } else if last.1.elapsed() >= stall {
            println!(
                "{} drain: {open} processes still waiting or running, unchanged for {stall:?}; checking",
                runner.elapsed()
            );
            break;
        }
        if Instant::now() >= next_progress {
            next_progress += progress_every;
            println!(
                "{} drain: {open} processes waiting or running",
                runner.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained_at = runner.started.elapsed();

    // Stop the executors; gather their records.
    let mut events = Vec::new();
    let mut facts = HashMap::new();
    for exec in &mut runner.executors {
        if let Some(task) = exec.task.take() {
            task.abort();
        }
        if let Some(mut child) = exec.child.take() {
            let _ = child.kill().await;
        }
        events.extend(exec.recorder.events());
        if let Some(path) = &exec.records {
            events.extend(records::read_file(path));
        }
        facts.insert(
            exec.plan.name.clone(),
            check::ExecutorFacts {
                executor_type: exec.plan.executor_type.to_owned(),
                location: exec.plan.location.map(str::to_owned),
                killed: exec.killed,
                held: exec.held.clone(),
            },
        );
    }
    let rows = check::rows(&admin).await;
    let pauses: Vec<(i64, i64)> = injected
        .iter()
        .filter(|f| f.fault == faults::Fault::Pause)
        .map(|f| (f.start, f.end))
        .collect();
    let acked = subs.acked.lock().unwrap().clone();
    let refused = subs.refused.lock().unwrap().clone();
    let outcome = check::check(&check::Inputs {
        rows: &rows,
        events: &events,
        executors: &facts,
        acked: &acked,
        submits_refused: &refused,
        pauses: &pauses,
        tolerate: &args.tolerate,
    });
    for r in &mut runner.replicas {
        r.stop().await;
    }

    // The report.
    println!("\n=== chaos run: seed {seed}, {} size ===", size.name);
    let mut counts: Vec<(&str, usize, String)> = Vec::new();
    for f in faults::ALL {
        let of: Vec<&faults::Injected> = injected.iter().filter(|i| i.fault == f).collect();
        let total: i64 = of.iter().map(|i| i.end - i.start).sum();
        counts.push((f.name(), of.len(), format!("{:.1} s", total as f64 / 1e6)));
    }
    println!(
        "faults: {} in all — {}",
        injected.len(),
        counts
            .iter()
            .map(|(n, c, t)| format!("{n} {c} ({t})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "submits: {} calls retried after a failure",
        subs.retried.lock().unwrap()
    );
    println!(
        "SQL-direct claims whose answer died with the session, found by running() on the next: {}",
        executor::RECOVERED.load(std::sync::atomic::Ordering::Relaxed)
    );
    for line in &outcome.lines {
        println!("{line}");
    }
    println!(
        "duration: {:.0} s to drain, {:.0} s in all",
        drained_at.as_secs_f64(),
        runner.started.elapsed().as_secs_f64()
    );
    for known in outcome.known_defects.iter().take(20) {
        println!("KNOWN DEFECT: {known}");
    }
    if !outcome.known_defects.is_empty() {
        println!(
            "known defects: {} (tolerated by --tolerate; docs/RELIABILITY.md)",
            outcome.known_defects.len()
        );
    }
    for v in outcome.violations.iter().take(50) {
        println!("VIOLATION: {v}");
    }
    if outcome.violations.is_empty() {
        println!("violations: 0 — chaos run passed (seed {seed})");
        0
    } else {
        println!(
            "violations: {} — chaos run FAILED (seed {seed})",
            outcome.violations.len()
        );
        1
    }
}
