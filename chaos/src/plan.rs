//! What a run does, decided up front from the seed: its size, the executors, and every process
//! (types, locations, names, priorities, workflows, deadlines, retries, how long each runs).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

pub const COLONY: &str = "chaos";
pub const TYPES: [&str; 3] = ["alpha", "beta", "gamma"];
pub const LOCATIONS: [Option<&str>; 3] = [Some("eu"), Some("us"), None];

/// How big a run is.
#[derive(Debug, Clone)]
pub struct Size {
    pub name: &'static str,
    pub replicas: usize,
    pub http_executors: usize,
    pub sql_executors: usize,
    /// HTTP executors that run as child processes (the ones `kill -9` hits).
    pub child_executors: usize,
    pub processes: usize,
    /// How long the submitters take to submit everything (the faults run meanwhile).
    pub submit_secs: u64,
    pub http_submitters: usize,
    pub sql_submitters: usize,
    /// Pause between faults, in milliseconds (uniform).
    pub fault_gap_ms: (u64, u64),
    /// How long a blackhole or a pause lasts, in milliseconds (uniform).
    pub outage_ms: (u64, u64),
    /// Longest `maxexectime` given to a process, in seconds.
    pub max_exec_s: u64,
}

impl Size {
    pub fn short() -> Size {
        Size {
            name: "short",
            replicas: 3,
            http_executors: 12,
            sql_executors: 8,
            child_executors: 4,
            processes: 6_000,
            submit_secs: 90,
            http_submitters: 2,
            sql_submitters: 2,
            fault_gap_ms: (1_500, 4_000),
            outage_ms: (1_000, 5_000),
            max_exec_s: 15,
        }
    }

    pub fn long() -> Size {
        Size {
            name: "long",
            replicas: 3,
            http_executors: 55,
            sql_executors: 35,
            child_executors: 10,
            processes: 100_000,
            submit_secs: 600,
            http_submitters: 4,
            sql_submitters: 4,
            fault_gap_ms: (3_000, 10_000),
            outage_ms: (1_000, 10_000),
            max_exec_s: 30,
        }
    }

    pub fn executors(&self) -> usize {
        self.http_executors + self.sql_executors + self.child_executors
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A tokio task in the runner, over HTTP (colony-client, every replica).
    Http,
    /// A tokio task in the runner, SQL-direct (tokio-postgres, `login(token)`).
    Sql,
    /// A child process over HTTP, killed with SIGKILL by the fault injector.
    Child,
}

/// An executor as registered.
#[derive(Debug, Clone)]
pub struct ExecutorPlan {
    pub name: String,
    pub executor_type: &'static str,
    pub location: Option<&'static str>,
    pub kind: Kind,
}

/// The executors: every (type, location) gets its share, kinds shuffled over them.
pub fn executors(size: &Size, rng: &mut StdRng) -> Vec<ExecutorPlan> {
    let mut kinds: Vec<Kind> = std::iter::repeat_n(Kind::Http, size.http_executors)
        .chain(std::iter::repeat_n(Kind::Sql, size.sql_executors))
        .chain(std::iter::repeat_n(Kind::Child, size.child_executors))
        .collect();
    rand::seq::SliceRandom::shuffle(kinds.as_mut_slice(), rng);
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let executor_type = TYPES[i % TYPES.len()];
            let location = LOCATIONS[(i / TYPES.len()) % LOCATIONS.len()];
            let prefix = match kind {
                Kind::Http => "http",
                Kind::Sql => "sql",
                Kind::Child => "child",
            };
            ExecutorPlan {
                name: format!("{prefix}{i}-g0"),
                executor_type,
                location,
                kind,
            }
        })
        .collect()
}

/// One process to submit: its sequence number (also its label, `p<seq>`) and spec.
#[derive(Debug, Clone)]
pub struct Planned {
    pub seq: u64,
    pub spec: Value,
}

/// What one submit call sends: specs in one transaction, or one workflow.
#[derive(Debug, Clone)]
pub enum Batch {
    Specs(Vec<Planned>),
    Workflow(Vec<Planned>),
}

impl Batch {
    pub fn processes(&self) -> &[Planned] {
        match self {
            Batch::Specs(p) | Batch::Workflow(p) => p,
        }
    }
}

pub fn label(seq: u64) -> String {
    format!("p{seq}")
}

/// Every batch, in submit order, `size.processes` processes in all.
pub fn batches(size: &Size, executors: &[ExecutorPlan], seed: u64) -> Vec<Batch> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_0fba_7c4e);
    // Named work goes only to executors that are never killed (a killed child's replacement
    // has a new name, and work naming only the dead one would wait forever, rightly).
    let stable: Vec<Vec<&str>> = TYPES
        .iter()
        .map(|t| {
            executors
                .iter()
                .filter(|e| e.executor_type == *t && e.kind != Kind::Child)
                .map(|e| e.name.as_str())
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    let mut seq = 0u64;
    while (seq as usize) < size.processes {
        let left = size.processes - seq as usize;
        if rng.random_bool(0.04) && left >= 5 {
            let n = rng.random_range(3..=5);
            let mut nodes = Vec::with_capacity(n);
            for i in 0..n {
                let mut spec = process_spec(size, &stable, &mut rng, seq, false);
                spec["nodename"] = json!(format!("n{i}"));
                let mut parents = Vec::new();
                if i > 0 {
                    // At least one parent among the earlier nodes: chains and diamonds.
                    for j in 0..i {
                        if j == i - 1 || rng.random_bool(0.3) {
                            parents.push(j);
                        }
                    }
                }
                spec["conditions"]["dependencies"] =
                    json!(parents.iter().map(|j| format!("n{j}")).collect::<Vec<_>>());
                nodes.push(Planned { seq, spec });
                seq += 1;
            }
            out.push(Batch::Workflow(nodes));
        } else {
            let n = rng.random_range(1..=10).min(left);
            let specs = (0..n)
                .map(|_| {
                    let spec = process_spec(size, &stable, &mut rng, seq, true);
                    seq += 1;
                    Planned { seq: seq - 1, spec }
                })
                .collect();
            out.push(Batch::Specs(specs));
        }
    }
    out
}

/// One process's spec. `kwargs` tells the executor how to run it: `work_ms`, and `fail` (the
/// executor fails it) or `overrun` (it works past `maxexectime` while its retries are below
/// this).
fn process_spec(
    size: &Size,
    stable: &[Vec<&str>],
    rng: &mut StdRng,
    seq: u64,
    standalone: bool,
) -> Value {
    let t = rng.random_range(0..TYPES.len());
    let work_ms: u64 = match rng.random_range(0..100) {
        0..75 => rng.random_range(0..=20),
        75..97 => rng.random_range(20..=300),
        _ => rng.random_range(300..=2000),
    };
    let mut spec = json!({
        "funcname": "chaos",
        "label": label(seq),
        "kwargs": {"work_ms": work_ms},
        "conditions": {"executortype": TYPES[t]},
    });
    let placement = rng.random_range(0..100);
    if placement < 25 {
        spec["conditions"]["locationname"] = json!(if rng.random_bool(0.5) { "eu" } else { "us" });
    } else if placement < 28 && standalone && !stable[t].is_empty() {
        let n = rng.random_range(1..=2).min(stable[t].len());
        let names: Vec<&str> =
            rand::seq::IndexedRandom::choose_multiple(stable[t].as_slice(), rng, n)
                .copied()
                .collect();
        spec["conditions"]["executornames"] = json!(names);
    }
    if rng.random_bool(0.2) {
        spec["priority"] = json!(rng.random_range(-10..=10));
    }
    if rng.random_bool(0.6) {
        let retries = rng.random_range(0..=3);
        spec["maxretries"] = json!(retries);
        if standalone && rng.random_bool(0.03) {
            // Runs past its deadline on its first `overrun` executions (more than maxretries:
            // it ends FAILED).
            spec["maxexectime"] = json!(2);
            spec["kwargs"]["overrun"] = json!(rng.random_range(1..=retries + 1));
        } else {
            spec["maxexectime"] = json!(rng.random_range(8..=size.max_exec_s));
        }
    }
    if standalone && rng.random_bool(0.02) {
        spec["kwargs"]["fail"] = json!(true);
    }
    spec
}
