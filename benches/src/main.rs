//! colony-bench: runs the benchmark scenarios against the dev cluster (fresh databases per
//! scenario, coordinator replicas as real processes), prints each table as it finishes, and
//! writes docs/BENCHMARKS.md with SVG plots and raw JSON. `scripts/bench` is the one command.

mod cpu;
mod env;
mod measure;
mod report;
mod scenarios;

use clap::Parser;
use env::{Bench, Size};
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "colony_assign benchmark suite")]
struct Args {
    /// Cluster to run against (key=value, no dbname); databases bench_* are created and dropped.
    #[arg(long, default_value = "host=127.0.0.1 port=54329 user=postgres")]
    conninfo: String,
    /// The colony-coordinator binary to start replicas from.
    #[arg(long, default_value = "target/release/colony-coordinator")]
    coordinator: PathBuf,
    /// `full` for the report, `smoke` for a quick run of every scenario (CI).
    #[arg(long, default_value = "full")]
    size: String,
    /// Markdown report to write; plots and raw JSON go to a `bench/` directory beside it.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    out: PathBuf,
    /// Comma-separated scenarios to run (default: all): seed, floor, wakeup, notify, batching,
    /// scale, soak, peer, parked, locality, partition, invalidation, fanout, shards.
    #[arg(long)]
    only: Option<String>,
    /// Keep the sections of scenarios not run now from the last report (its
    /// `bench/sections.json`), each still naming the run that measured it.
    #[arg(long)]
    merge: bool,
    /// Replica counts of the seed table (default: 1,3,5,7,9 full, 1,2 smoke).
    #[arg(long, value_delimiter = ',')]
    seed_replicas: Option<Vec<usize>>,
    /// The command line to print in the report (scripts/bench passes its own).
    #[arg(long, default_value = "bash scripts/bench")]
    command: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // Thousands of parked long-polls are thousands of sockets.
    let _ = rlimit_raise();
    let mut size = match args.size.as_str() {
        "smoke" => Size::smoke(),
        _ => Size::full(),
    };
    if let Some(replicas) = &args.seed_replicas {
        size.seed_replicas = replicas.clone();
    }
    let out_dir = args
        .out
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("bench");
    std::fs::create_dir_all(&out_dir).expect("create the report directory");
    let bench = Bench {
        conninfo: args.conninfo.clone(),
        coordinator: args.coordinator.clone(),
        size,
        out_dir: out_dir.clone(),
    };
    let selected: Vec<String> = match &args.only {
        Some(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
        None => scenarios::ALL.iter().map(|s| s.to_string()).collect(),
    };
    let header = machine_header(&bench, &args).await;
    let produced = format!(
        "`{}` ({} size) on {}",
        args.command,
        bench.size.name,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let mut sections = if args.merge {
        earlier_sections(&out_dir, &selected)
    } else {
        Vec::new()
    };
    for (i, name) in selected.iter().enumerate() {
        println!("\n[{}/{}] {name}", i + 1, selected.len());
        let mut section = match name.as_str() {
            "seed" => scenarios::seed::run(&bench).await,
            "floor" => scenarios::floor::run(&bench).await,
            "wakeup" => scenarios::wakeup::run(&bench).await,
            "notify" => scenarios::notify_cost::run(&bench).await,
            "batching" => scenarios::batching::run(&bench).await,
            "scale" => scenarios::scale::run(&bench).await,
            "soak" => scenarios::soak::run(&bench).await,
            "peer" => scenarios::peer::run(&bench).await,
            "parked" => scenarios::parked::run(&bench).await,
            "locality" => scenarios::locality::run(&bench).await,
            "partition" => scenarios::partition::run(&bench).await,
            "invalidation" => scenarios::invalidation::run(&bench).await,
            "fanout" => scenarios::fanout::run(&bench).await,
            "shards" => scenarios::shards::run(&bench).await,
            other => panic!("unknown scenario {other:?}; known: {:?}", scenarios::ALL),
        };
        section.print();
        section.produced = produced.clone();
        sections.push(section);
        sections.sort_by_key(|s| scenarios::ALL.iter().position(|a| *a == s.id));
        // Written after every scenario, so an interrupted run keeps what it measured.
        write(&args.out, &out_dir, &header, &sections);
    }
    println!("\nwrote {}", args.out.display());
}

fn write(
    out: &std::path::Path,
    out_dir: &std::path::Path,
    header: &str,
    sections: &[report::Section],
) {
    std::fs::write(out, report::markdown(header, sections)).expect("write the report");
    let raw: serde_json::Map<String, serde_json::Value> = sections
        .iter()
        .map(|s| (s.id.to_owned(), s.raw.clone()))
        .collect();
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&raw).unwrap(),
    )
    .expect("write raw JSON");
    std::fs::write(
        out_dir.join("sections.json"),
        serde_json::to_string_pretty(sections).unwrap(),
    )
    .expect("write the sections");
}

/// The last report's sections of scenarios that are not about to run again.
fn earlier_sections(out_dir: &std::path::Path, selected: &[String]) -> Vec<report::Section> {
    let Ok(text) = std::fs::read_to_string(out_dir.join("sections.json")) else {
        return Vec::new();
    };
    let earlier: Vec<report::Section> =
        serde_json::from_str(&text).expect("bench/sections.json is a report this harness wrote");
    earlier
        .into_iter()
        .filter(|s| !selected.contains(&s.id))
        .collect()
}

fn rlimit_raise() -> std::io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on our own process.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    Ok(())
}

async fn machine_header(bench: &Bench, args: &Args) -> String {
    let admin = bench.admin().await;
    let version: String = admin
        .query_one("SELECT version()", &[])
        .await
        .unwrap()
        .get(0);
    let mut settings = Vec::new();
    for name in [
        "shared_buffers",
        "max_connections",
        "fsync",
        "synchronous_commit",
        "wal_level",
        "max_worker_processes",
        "shared_preload_libraries",
        "track_commit_timestamp",
    ] {
        let value: String = admin
            .query_one(&format!("SHOW {name}"), &[])
            .await
            .unwrap()
            .get(0);
        settings.push(format!("{name}={value}"));
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    format!(
        "# Benchmarks\n\nProduced by `{}` ({} size) on {}{}.\n\n\
         Machine: {cores} cores, {:.0} GiB RAM, shared by PostgreSQL, the coordinator replicas and the load \
         generator (all on one host). {version}; settings: {}.\n\n\
         Figures are meant to be read as ratios measured within one run (this machine is shared and noisy), not as \
         absolute numbers. Raw data: [bench/results.json](bench/results.json).\n\n",
        args.command,
        bench.size.name,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        if args.merge {
            "; the other sections are kept from earlier runs, each naming the command that measured it"
        } else {
            ""
        },
        memory as f64 / 1048576.0,
        settings.join(", ")
    )
}
