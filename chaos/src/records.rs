//! The executors' own records: what each executor received and how each run ended, with wall
//! clock timestamps (every process of the run is on this host, PostgreSQL included). Tasks keep
//! them in memory; child processes append JSON lines to a file with one `write` each, so a
//! `kill -9` loses nothing already recorded.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum End {
    /// The close was acknowledged.
    Closed,
    /// The fail was acknowledged.
    Failed,
    /// The close or fail was refused: the process was no longer this executor's (requeued
    /// after its deadline, or given to another).
    Refused,
    /// No answer could be had (every attempt failed); the outcome is unknown.
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    /// The executor received process `id` at `at` (µs), with `retries` retries spent, to run
    /// until `deadline` (µs; none without maxexectime).
    Claim {
        executor: String,
        id: i64,
        at: i64,
        retries: i32,
        deadline: Option<i64>,
    },
    /// The executor stopped working on `id` at `at` and its close or fail ended as `end`.
    Done {
        executor: String,
        id: i64,
        at: i64,
        end: End,
    },
}

/// Where an executor's records go.
#[derive(Clone)]
pub enum Recorder {
    Memory(Arc<Mutex<Vec<Event>>>),
    File(Arc<Mutex<std::fs::File>>),
}

impl Recorder {
    pub fn memory() -> Recorder {
        Recorder::Memory(Arc::default())
    }

    pub fn file(path: &Path) -> std::io::Result<Recorder> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Recorder::File(Arc::new(Mutex::new(file))))
    }

    pub fn push(&self, event: Event) {
        match self {
            Recorder::Memory(events) => events.lock().unwrap().push(event),
            Recorder::File(file) => {
                let mut line = serde_json::to_vec(&event).expect("events serialize");
                line.push(b'\n');
                // One write per line: the kernel has it as soon as this returns.
                file.lock()
                    .unwrap()
                    .write_all(&line)
                    .expect("write the executor's record");
            }
        }
    }

    /// What this recorder holds (memory) — files are read with [`read_file`].
    pub fn events(&self) -> Vec<Event> {
        match self {
            Recorder::Memory(events) => events.lock().unwrap().clone(),
            Recorder::File(_) => Vec::new(),
        }
    }
}

/// A child's records; a last line cut short by the kill is ignored.
pub fn read_file(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
