//! CPU time of processes, PostgreSQL clusters and the machine, read from /proc: what the
//! scenarios that compare where CPU goes (fanout, shards) measure with.

/// CPU seconds a process has used (all its threads), from /proc/<pid>/task/*/schedstat.
pub fn process_cpu(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>() as f64
        / 1e9
}

/// CPU seconds a PostgreSQL cluster has used: its postmaster, its live processes, and those
/// that have exited (the postmaster's cutime + cstime).
pub fn cluster_cpu(postmaster: u32) -> f64 {
    let ticks = clock_ticks();
    let exited = std::fs::read_to_string(format!("/proc/{postmaster}/stat"))
        .ok()
        .map_or(0.0, |s| {
            let fields = stat_fields(&s);
            // cutime and cstime: fields 16 and 17 of proc(5), 14 and 15 after the command.
            let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
            (field(13).unwrap_or(0.0) + field(14).unwrap_or(0.0)) / ticks
        });
    exited
        + process_cpu(postmaster)
        + children(postmaster)
            .into_iter()
            .map(process_cpu)
            .sum::<f64>()
}

/// The fields of /proc/<pid>/stat after the command name (which may contain spaces).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect())
}

fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| stat_fields(&s).get(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The machine's (busy, total) jiffies since boot, from /proc/stat.
pub fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    (busy, busy + at(3) + at(4))
}
