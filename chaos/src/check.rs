//! The end of a run: every invariant of the issue checked from the tables and the executors'
//! own records, the counts, and the violations.

use crate::cluster::STALE_AFTER_S;
use crate::plan::label;
use crate::records::{End, Event};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// Assignment latency bound, and the share of assignments that must meet it.
pub const LATENCY_BOUND_US: i64 = 30_000_000;
pub const LATENCY_SHARE: f64 = 0.9999;

/// A process as the table has it at the end.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub label: Option<String>,
    pub state: i32,
    pub retries: i32,
    pub max_retries: i32,
    pub executor_type: String,
    pub location: Option<String>,
    pub executor_names: Option<Vec<String>>,
    pub assigned: Option<String>,
    pub submitted: i64,
    /// For a workflow node: when its last parent ended (it became assignable then).
    pub parents_ended: Option<i64>,
    pub errors: Option<Vec<String>>,
}

pub async fn rows(admin: &tokio_postgres::Client) -> Vec<Row> {
    admin
        .query(
            "SELECT p.id, p.label, p.state, p.retries, p.max_retries, p.executor_type, p.location,
                    p.executor_names, p.assigned_executor,
                    (extract(epoch FROM p.submitted_at) * 1000000)::int8,
                    (SELECT (extract(epoch FROM max(q.ended_at)) * 1000000)::int8
                       FROM colony_assign.processes q WHERE q.id = ANY(p.parents)),
                    p.errors
             FROM colony_assign.processes p WHERE p.colony = $1",
            &[&crate::plan::COLONY],
        )
        .await
        .expect("read the processes")
        .into_iter()
        .map(|r| Row {
            id: r.get(0),
            label: r.get(1),
            state: r.get(2),
            retries: r.get(3),
            max_retries: r.get(4),
            executor_type: r.get(5),
            location: r.get(6),
            executor_names: r.get(7),
            assigned: r.get(8),
            submitted: r.get(9),
            parents_ended: r.get(10),
            errors: r.get(11),
        })
        .collect()
}

/// An executor: its type and location, and when it was killed (`kill -9`), if it was.
#[derive(Debug, Clone)]
pub struct ExecutorFacts {
    pub executor_type: String,
    pub location: Option<String>,
    pub killed: Option<i64>,
    /// Processes RUNNING for it right after it was killed.
    pub held: Vec<i64>,
}

/// Everything the checks look at.
pub struct Inputs<'a> {
    pub rows: &'a [Row],
    pub events: &'a [Event],
    pub executors: &'a HashMap<String, ExecutorFacts>,
    pub acked: &'a [u64],
    pub submits_refused: &'a [String],
    /// (start, end) µs of each pause, left out of assignment latency.
    pub pauses: &'a [(i64, i64)],
    /// Known defects (docs/RELIABILITY.md) reported without failing the run: `stranded` (a
    /// process claimed for an executor that never received the answer, with no deadline to
    /// bring it back) and `close-misreported` (colony-client reporting a close as applied after
    /// a lost answer when another executor had closed the process).
    pub tolerate: &'a [String],
}

impl Inputs<'_> {
    fn tolerates(&self, defect: &str) -> bool {
        self.tolerate.iter().any(|t| t == defect)
    }
}

/// A process's runs, for a violation's message.
fn describe(runs: &[Run]) -> String {
    runs.iter()
        .map(|r| {
            format!(
                "[{} claim {} retries {} deadline {:?} done {:?}]",
                r.executor, r.claim, r.retries, r.deadline, r.done
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One execution of a process, from the executor's records.
#[derive(Debug, Clone)]
struct Run {
    executor: String,
    claim: i64,
    retries: i32,
    deadline: Option<i64>,
    /// When the executor stopped working on it, and how its close ended.
    done: Option<(i64, End)>,
}

impl Run {
    /// When the run ended: its close, or its executor's kill; None when it never ended.
    fn end(&self, executors: &HashMap<String, ExecutorFacts>) -> Option<i64> {
        self.done
            .map(|(at, _)| at)
            .or_else(|| executors.get(&self.executor).and_then(|e| e.killed))
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub lines: Vec<String>,
    pub violations: Vec<String>,
    pub known_defects: Vec<String>,
    /// Latencies (µs) of first assignments and of reassignments.
    pub first: Vec<i64>,
    pub again: Vec<i64>,
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e6
}

fn paused_within(pauses: &[(i64, i64)], from: i64, to: i64) -> i64 {
    pauses
        .iter()
        .map(|&(s, e)| (e.min(to) - s.max(from)).max(0))
        .sum()
}

pub fn check(input: &Inputs) -> Outcome {
    let mut out = Outcome::default();
    let executors = input.executors;
    let mut by_label: HashMap<&str, Vec<&Row>> = HashMap::new();
    for row in input.rows {
        if let Some(l) = row.label.as_deref() {
            by_label.entry(l).or_default().push(row);
        }
    }
    let by_id: HashMap<i64, &Row> = input.rows.iter().map(|r| (r.id, r)).collect();

    // Runs per process, from the records.
    let mut events: Vec<&Event> = input.events.iter().collect();
    events.sort_by_key(|e| match e {
        Event::Claim { at, .. } | Event::Done { at, .. } => *at,
    });
    let mut runs: HashMap<i64, Vec<Run>> = HashMap::new();
    let (mut claims, mut unknown) = (0usize, 0usize);
    let mut ends: HashMap<&'static str, usize> = HashMap::new();
    for e in events {
        match e {
            Event::Claim {
                executor,
                id,
                at,
                retries,
                deadline,
            } => {
                claims += 1;
                runs.entry(*id).or_default().push(Run {
                    executor: executor.clone(),
                    claim: *at,
                    retries: *retries,
                    deadline: *deadline,
                    done: None,
                });
            }
            Event::Done {
                executor,
                id,
                at,
                end,
            } => {
                *ends
                    .entry(match end {
                        End::Closed => "closed",
                        End::Failed => "failed",
                        End::Refused => "refused (no longer its)",
                        End::Unknown => "unknown",
                    })
                    .or_default() += 1;
                match runs.get_mut(id).and_then(|r| {
                    r.iter_mut()
                        .rev()
                        .find(|r| &r.executor == executor && r.done.is_none())
                }) {
                    Some(run) => run.done = Some((*at, *end)),
                    None => out.violations.push(format!(
                        "record: {executor} finished process {id} it never claimed"
                    )),
                }
                if *end == End::Unknown {
                    unknown += 1;
                    out.violations.push(format!(
                        "{executor} could not learn whether its close of process {id} was applied"
                    ));
                }
            }
        }
    }

    // 1. Every acknowledged submit exists once and reached a final state.
    let acked: HashSet<u64> = input.acked.iter().copied().collect();
    let (mut missing, mut doubled, mut unfinished, mut stranded) = (0, 0, 0, 0);
    for seq in &acked {
        let l = label(*seq);
        match by_label.get(l.as_str()).map(Vec::as_slice) {
            None | Some([]) => {
                missing += 1;
                out.violations
                    .push(format!("acknowledged submit {l} is not in the table"));
            }
            Some([row]) if row.state <= 1 => {
                unfinished += 1;
                let received = runs.get(&row.id).is_some_and(|rs| {
                    rs.iter()
                        .any(|r| Some(&r.executor) == row.assigned.as_ref() && r.done.is_none())
                });
                let what = format!(
                    "process {} ({l}) never reached a final state: {} {}",
                    row.id,
                    ["WAITING", "RUNNING"][row.state as usize],
                    row.assigned.as_deref().unwrap_or("")
                );
                if row.state == 1 && !received {
                    // Claimed for an executor that never got the answer (a replica killed
                    // between its claim and its answer): nothing gives it back but a deadline,
                    // and it has none.
                    stranded += 1;
                    let what = format!(
                        "{what}, claimed for an executor that never received it (stranded)"
                    );
                    if input.tolerates("stranded") {
                        out.known_defects.push(what);
                    } else {
                        out.violations.push(what);
                    }
                } else {
                    out.violations.push(what);
                }
            }
            Some([_]) => {}
            Some(many) => {
                doubled += 1;
                out.violations.push(format!(
                    "{l} was submitted once and exists {} times",
                    many.len()
                ));
            }
        }
    }
    let unacked = by_label
        .keys()
        .filter(|l| {
            l.strip_prefix('p')
                .and_then(|s| s.parse::<u64>().ok())
                .is_none_or(|s| !acked.contains(&s))
        })
        .count();
    for refused in input.submits_refused {
        out.violations.push(format!("submit refused: {refused}"));
    }

    // 2. No executor got work it could not take; 3. no process ran on two executors at
    // overlapping times unless the first was killed or overran its maxexectime.
    let (mut incompatible, mut overlaps, mut overlaps_allowed) = (0, 0, 0);
    for (id, rs) in &runs {
        let Some(row) = by_id.get(id) else {
            out.violations.push(format!(
                "record: process {id} was claimed but is not in the table"
            ));
            continue;
        };
        for r in rs {
            let Some(e) = executors.get(&r.executor) else {
                out.violations
                    .push(format!("record: unknown executor {}", r.executor));
                continue;
            };
            let names_ok = row
                .executor_names
                .as_ref()
                .is_none_or(|n| n.is_empty() || n.contains(&r.executor));
            let location_ok = row.location.is_none() || row.location == e.location;
            if e.executor_type != row.executor_type || !names_ok || !location_ok {
                incompatible += 1;
                out.violations.push(format!(
                    "process {id} ({} {:?} {:?}) went to {} ({} {:?})",
                    row.executor_type,
                    row.location,
                    row.executor_names,
                    r.executor,
                    e.executor_type,
                    e.location
                ));
            }
        }
        for (i, a) in rs.iter().enumerate() {
            let end = a.end(executors);
            for b in &rs[i + 1..] {
                if end.is_some_and(|end| b.claim >= end) {
                    continue;
                }
                let overran = a.deadline.is_some_and(|d| b.claim >= d);
                let killed = executors
                    .get(&a.executor)
                    .and_then(|e| e.killed)
                    .is_some_and(|k| k <= b.claim);
                if overran || killed {
                    overlaps_allowed += 1;
                } else {
                    overlaps += 1;
                    out.violations.push(format!(
                        "process {id} ran on {} and {} at once: {}",
                        a.executor,
                        b.executor,
                        describe(rs)
                    ));
                }
            }
        }
    }

    // 4. Retries never exceed maxretries; acknowledged closes and fails are durable.
    let mut over_retried = 0;
    for row in input.rows {
        if row.max_retries >= 0 && row.retries > row.max_retries {
            over_retried += 1;
            out.violations.push(format!(
                "process {} retried {} times, maxretries {}",
                row.id, row.retries, row.max_retries
            ));
        }
    }
    let (mut refused_applied, mut misreported_closes) = (0, 0);
    for (id, rs) in &runs {
        // A process not in the table is reported above.
        let Some(&row) = by_id.get(id) else { continue };
        for r in rs {
            let want = match r.done {
                Some((_, End::Closed)) => 2,
                Some((_, End::Failed)) => 3,
                Some((_, End::Refused)) => {
                    // Told "refused", yet the table has the process finished by this executor,
                    // and this executor ran it only this once: its own call was applied (only
                    // it can finish as itself) and it was told otherwise.
                    let own_runs = rs.iter().filter(|o| o.executor == r.executor).count();
                    let reaped = row
                        .errors
                        .as_ref()
                        .is_some_and(|e| e.iter().any(|m| m.contains("maximum execution time")));
                    if own_runs == 1
                        && row.assigned.as_ref() == Some(&r.executor)
                        && (row.state == 2 || (row.state == 3 && !reaped))
                    {
                        refused_applied += 1;
                        out.violations.push(format!(
                            "process {id}: {} was told its close or fail was refused, but the table has it {} by {}; runs {}",
                            r.executor,
                            ["WAITING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED"]
                                [row.state.clamp(0, 4) as usize],
                            r.executor,
                            describe(rs)
                        ));
                    }
                    continue;
                }
                _ => continue,
            };
            // An acknowledged fail left the executor's errors, not the reaper's (a process
            // FAILED at its deadline keeps its executor's name).
            let reaper_failed = want == 3
                && !row
                    .errors
                    .as_ref()
                    .is_some_and(|e| e.iter().any(|m| m == crate::executor::FAIL_MESSAGE));
            if row.state != want || row.assigned.as_ref() != Some(&r.executor) || reaper_failed {
                let what = format!(
                    "process {id}: {}'s acknowledged {} is not what the table says (state {}, executor {:?}, errors {:?}); runs {}",
                    r.executor,
                    if want == 2 { "close" } else { "fail" },
                    row.state,
                    row.assigned,
                    row.errors,
                    describe(rs)
                );
                // The close was refused and colony-client reported it applied: another
                // executor closed the process after it was requeued.
                let misreported = row.state == want && row.assigned.is_some() && !reaper_failed;
                misreported_closes += 1;
                if misreported && input.tolerates("close-misreported") {
                    out.known_defects.push(what);
                } else {
                    out.violations.push(what);
                }
            }
        }
    }

    // 5. Claims the table says happened and no executor recorded: one at each retry count
    // below the final one (each execution-deadline requeue adds one), and one at the final
    // count when an executor or the deadline ended it. Lost with an executor killed while it
    // held the process, that is the kill; otherwise the answer never reached a live executor
    // (stranded: a replica killed or cut off between claim and answer, a session lost at
    // commit), and it cost a retry or the process.
    let killed_held: HashSet<i64> = executors
        .values()
        .flat_map(|e| e.held.iter().copied())
        .collect();
    let (mut lost_with_kill, mut lost_claims) = (0, 0);
    for row in input.rows {
        let errors = row.errors.as_deref().unwrap_or_default();
        let by_deadline = errors.iter().any(|m| m.contains("maximum execution time"));
        let ran_last = row.state == 2
            || (row.state == 3
                && (by_deadline || errors.iter().any(|m| m.contains("chaos: asked to fail"))));
        let recorded: HashSet<i32> = runs
            .get(&row.id)
            .map(|rs| rs.iter().map(|r| r.retries).collect())
            .unwrap_or_default();
        let missing: Vec<i32> = (0..row.retries + i32::from(ran_last))
            .filter(|k| !recorded.contains(k))
            .collect();
        if missing.is_empty() {
            continue;
        }
        if killed_held.contains(&row.id) {
            lost_with_kill += missing.len();
            continue;
        }
        lost_claims += missing.len();
        let what = format!(
            "process {} ({}, state {}, retries {}/{}): its claim at retry {:?} never reached an executor (stranded until its deadline); runs {}",
            row.id,
            row.label.as_deref().unwrap_or(""),
            row.state,
            row.retries,
            row.max_retries,
            missing,
            runs.get(&row.id).map_or(String::new(), |rs| describe(rs))
        );
        stranded += 1;
        if input.tolerates("stranded") {
            out.known_defects.push(what);
        } else {
            out.violations.push(what);
        }
    }

    // 6. Assignment latency: from becoming assignable (submit, or a workflow's last parent
    // ending; for a reassignment, the deadline the first run overran or its killed executor
    // going stale) to an executor receiving it, less time the colony was paused.
    // (latency µs, process, executor, what it is measured from) of the slowest.
    let mut slowest: Vec<(i64, i64, String, &'static str)> = Vec::new();
    for (id, rs) in &runs {
        let Some(&row) = by_id.get(id) else { continue };
        let first = &rs[0];
        // A first run at a later retry follows a lost claim (counted above): when it became
        // assignable again is not known.
        if first.retries == 0 {
            let since = row
                .parents_ended
                .unwrap_or(row.submitted)
                .max(row.submitted);
            let latency =
                (first.claim - since - paused_within(input.pauses, since, first.claim)).max(0);
            out.first.push(latency);
            slowest.push((latency, *id, first.executor.clone(), "submit"));
        }
        for pair in rs.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let killed = executors.get(&a.executor).and_then(|e| e.killed);
            let since = match (a.done, a.deadline, killed) {
                (_, Some(d), _) if b.claim >= d && a.end(executors).is_none_or(|e| e > d) => d,
                // Requeued when the killed executor went stale (at the latest), or at the
                // deadline if that came first.
                (None, d, Some(k)) => (k + STALE_AFTER_S * 1_000_000).min(d.unwrap_or(i64::MAX)),
                _ => continue,
            };
            let latency = (b.claim - since - paused_within(input.pauses, since, b.claim)).max(0);
            out.again.push(latency);
            slowest.push((latency, *id, b.executor.clone(), "requeue"));
        }
    }
    slowest.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
    let mut all: Vec<i64> = out.first.iter().chain(&out.again).copied().collect();
    all.sort_unstable();
    let within = all.iter().filter(|l| **l <= LATENCY_BOUND_US).count();
    let share = if all.is_empty() {
        1.0
    } else {
        within as f64 / all.len() as f64
    };
    if share < LATENCY_SHARE {
        out.violations.push(format!(
            "{:.4}% of assignments within 30 s of becoming assignable (bound {:.2}%)",
            share * 100.0,
            LATENCY_SHARE * 100.0
        ));
    }

    // Counts.
    let mut states = [0usize; 5];
    for r in input.rows {
        states[r.state.clamp(0, 4) as usize] += 1;
    }
    let failed_by_deadline = input
        .rows
        .iter()
        .filter(|r| {
            r.state == 3
                && r.errors
                    .as_ref()
                    .is_some_and(|e| e.iter().any(|m| m.contains("maximum execution time")))
        })
        .count();
    let mut first = out.first.clone();
    first.sort_unstable();
    let mut again = out.again.clone();
    again.sort_unstable();
    let mut l = String::new();
    let _ = writeln!(
        l,
        "processes: {} acknowledged, {} in the table ({} not acknowledged), SUCCESS {}, FAILED {} \
         ({} by executors' fail, {} after deadlines, the rest workflow descendants), CANCELLED {}, \
         WAITING {}, RUNNING {}",
        acked.len(),
        input.rows.len(),
        unacked,
        states[2],
        states[3],
        ends.get("failed").copied().unwrap_or(0),
        failed_by_deadline,
        states[4],
        states[0],
        states[1]
    );
    let _ = writeln!(
        l,
        "executions: {claims} claims recorded on {} processes; ends: {}",
        runs.len(),
        {
            let mut e: Vec<_> = ends.iter().map(|(k, v)| format!("{k} {v}")).collect();
            e.sort();
            e.join(", ")
        }
    );
    let _ = writeln!(
        l,
        "            overlapping runs allowed (first killed or past its deadline) {overlaps_allowed}; \
         claims never received: {lost_with_kill} by a killed executor, {lost_claims} otherwise \
         (stranded)"
    );
    let _ = writeln!(
        l,
        "assignment latency: first {} (p50 {:.3} s, p99 {:.3} s, p99.99 {:.3} s, max {:.3} s); \
         reassignments {} (p50 {:.3} s, p99 {:.3} s, max {:.3} s); within 30 s {:.4}%",
        first.len(),
        percentile(&first, 0.5),
        percentile(&first, 0.99),
        percentile(&first, 0.9999),
        percentile(&first, 1.0),
        again.len(),
        percentile(&again, 0.5),
        percentile(&again, 0.99),
        percentile(&again, 1.0),
        share * 100.0
    );
    let _ = writeln!(
        l,
        "slowest assignments: {}",
        slowest
            .iter()
            .take(5)
            .map(|(us, id, executor, from)| format!(
                "{:.1} s (process {id} to {executor}, since its {from})",
                *us as f64 / 1e6
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = write!(
        l,
        "invariants: missing {missing}, duplicated {doubled}, unfinished {unfinished}, \
         stranded {stranded}, wrong executor {incompatible}, overlapping runs {overlaps}, \
         retries over maxretries {over_retried}, closes misreported {misreported_closes}, \
         refusals misreported {refused_applied}, outcomes unknown {unknown}"
    );
    out.lines = l.lines().map(str::to_owned).collect();
    out
}

#[cfg(test)]
mod tests {
    //! Every check can fail: one clean run passes, and each kind of violation, made on purpose,
    //! is reported (and only the known defects pass with `--tolerate`).
    use super::*;

    const S: i64 = 1_000_000;

    fn row(id: i64, state: i32, assigned: Option<&str>) -> Row {
        Row {
            id,
            label: Some(label(id as u64)),
            state,
            retries: 0,
            max_retries: 1,
            executor_type: "alpha".into(),
            location: None,
            executor_names: None,
            assigned: assigned.map(str::to_owned),
            submitted: 100 * S,
            parents_ended: None,
            errors: None,
        }
    }

    fn claim(executor: &str, id: i64, at: i64, retries: i32, deadline: Option<i64>) -> Event {
        Event::Claim {
            executor: executor.into(),
            id,
            at,
            retries,
            deadline,
        }
    }

    fn done(executor: &str, id: i64, at: i64, end: End) -> Event {
        Event::Done {
            executor: executor.into(),
            id,
            at,
            end,
        }
    }

    fn executors() -> HashMap<String, ExecutorFacts> {
        ["e1", "e2"]
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    ExecutorFacts {
                        executor_type: "alpha".into(),
                        location: None,
                        killed: None,
                        held: Vec::new(),
                    },
                )
            })
            .collect()
    }

    /// The outcome of a run of one process (id 0) with these rows, records and executors.
    fn run(
        rows: &[Row],
        events: &[Event],
        executors: &HashMap<String, ExecutorFacts>,
        tolerate: &[&str],
    ) -> Outcome {
        let tolerate: Vec<String> = tolerate.iter().map(|t| t.to_string()).collect();
        check(&Inputs {
            rows,
            events,
            executors,
            acked: &[0],
            submits_refused: &[],
            pauses: &[],
            tolerate: &tolerate,
        })
    }

    fn clean() -> (Vec<Row>, Vec<Event>) {
        (
            vec![row(0, 2, Some("e1"))],
            vec![
                claim("e1", 0, 101 * S, 0, None),
                done("e1", 0, 102 * S, End::Closed),
            ],
        )
    }

    fn violated(outcome: &Outcome, what: &str) {
        assert!(
            outcome.violations.iter().any(|v| v.contains(what)),
            "expected a violation with {what:?}, got {:?}",
            outcome.violations
        );
    }

    #[test]
    fn a_clean_run_passes() {
        let (rows, events) = clean();
        let outcome = run(&rows, &events, &executors(), &[]);
        assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
        assert!(outcome.known_defects.is_empty());
    }

    #[test]
    fn a_missing_a_doubled_and_an_unfinished_submit_fail() {
        let (_, events) = clean();
        violated(&run(&[], &events, &executors(), &[]), "is not in the table");
        let (rows, _) = clean();
        let doubled = vec![rows[0].clone(), row(1, 2, Some("e1"))];
        let mut doubled = doubled;
        doubled[1].label = Some(label(0));
        violated(&run(&doubled, &events, &executors(), &[]), "exists 2 times");
        let waiting = vec![row(0, 0, None)];
        violated(
            &run(&waiting, &[], &executors(), &[]),
            "never reached a final state",
        );
    }

    #[test]
    fn work_an_executor_could_not_take_fails() {
        let (mut rows, events) = clean();
        rows[0].executor_type = "beta".into();
        violated(&run(&rows, &events, &executors(), &[]), "went to e1");
        let (mut rows, events) = clean();
        rows[0].executor_names = Some(vec!["e2".into()]);
        violated(&run(&rows, &events, &executors(), &[]), "went to e1");
        let (mut rows, events) = clean();
        rows[0].location = Some("eu".into());
        violated(&run(&rows, &events, &executors(), &[]), "went to e1");
    }

    #[test]
    fn overlapping_runs_fail_unless_the_first_overran_or_was_killed() {
        let rows = vec![row(0, 2, Some("e2"))];
        let events = vec![
            claim("e1", 0, 101 * S, 0, Some(110 * S)),
            claim("e2", 0, 105 * S, 0, None),
            done("e2", 0, 106 * S, End::Closed),
            done("e1", 0, 107 * S, End::Refused),
        ];
        violated(&run(&rows, &events, &executors(), &[]), "at once");
        // Past the first run's deadline: allowed.
        let events = vec![
            claim("e1", 0, 101 * S, 0, Some(104 * S)),
            claim("e2", 0, 105 * S, 1, None),
            done("e2", 0, 106 * S, End::Closed),
            done("e1", 0, 107 * S, End::Refused),
        ];
        let mut rows = rows;
        rows[0].retries = 1;
        let outcome = run(&rows, &events, &executors(), &[]);
        assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
        // The first executor killed before the second claim: allowed.
        let mut killed = executors();
        killed.get_mut("e1").unwrap().killed = Some(104 * S);
        let events = vec![
            claim("e1", 0, 101 * S, 0, None),
            claim("e2", 0, 120 * S, 0, None),
            done("e2", 0, 121 * S, End::Closed),
        ];
        rows[0].retries = 0;
        let outcome = run(&rows, &events, &killed, &[]);
        assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    }

    #[test]
    fn retries_over_maxretries_fail() {
        let (mut rows, mut events) = clean();
        rows[0].retries = 2;
        events.insert(0, claim("e2", 0, 100 * S, 0, Some(100 * S)));
        events.insert(1, claim("e2", 0, 100 * S, 1, Some(100 * S)));
        events[2] = claim("e1", 0, 101 * S, 2, None);
        violated(
            &run(&rows, &events, &executors(), &[]),
            "retried 2 times, maxretries 1",
        );
    }

    #[test]
    fn a_close_reported_applied_that_another_executor_made_fails_unless_tolerated() {
        let rows = vec![row(0, 2, Some("e2"))];
        let events = vec![
            claim("e1", 0, 101 * S, 0, Some(103 * S)),
            claim("e2", 0, 104 * S, 0, None),
            done("e2", 0, 105 * S, End::Closed),
            done("e1", 0, 106 * S, End::Closed),
        ];
        violated(
            &run(&rows, &events, &executors(), &[]),
            "acknowledged close is not what the table says",
        );
        let tolerated = run(&rows, &events, &executors(), &["close-misreported"]);
        assert!(
            tolerated.violations.is_empty(),
            "{:?}",
            tolerated.violations
        );
        assert_eq!(tolerated.known_defects.len(), 1);
    }

    #[test]
    fn a_fail_reported_applied_that_the_reaper_made_fails() {
        let mut rows = vec![row(0, 3, Some("e1"))];
        rows[0].errors = Some(vec!["maximum execution time of 8 s exceeded".into()]);
        let events = vec![
            claim("e1", 0, 101 * S, 0, Some(103 * S)),
            done("e1", 0, 104 * S, End::Failed),
        ];
        violated(
            &run(&rows, &events, &executors(), &["close-misreported"]),
            "acknowledged fail is not what the table says",
        );
        rows[0].errors = Some(vec![crate::executor::FAIL_MESSAGE.into()]);
        let outcome = run(&rows, &events, &executors(), &[]);
        assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    }

    #[test]
    fn a_close_reported_refused_that_was_applied_fails() {
        let (rows, mut events) = clean();
        events[1] = done("e1", 0, 102 * S, End::Refused);
        violated(
            &run(&rows, &events, &executors(), &[]),
            "was told its close or fail was refused",
        );
    }

    #[test]
    fn an_unknown_outcome_fails() {
        let (rows, mut events) = clean();
        events[1] = done("e1", 0, 102 * S, End::Unknown);
        violated(
            &run(&rows, &events, &executors(), &[]),
            "could not learn whether",
        );
    }

    #[test]
    fn a_claim_nobody_received_fails_unless_its_executor_was_killed_or_tolerated() {
        // Retry 0's claim never recorded; it came back at its deadline and e1 ran retry 1.
        let (mut rows, mut events) = clean();
        rows[0].retries = 1;
        events[0] = claim("e1", 0, 120 * S, 1, None);
        events[1] = done("e1", 0, 121 * S, End::Closed);
        violated(
            &run(&rows, &events, &executors(), &[]),
            "never reached an executor",
        );
        let tolerated = run(&rows, &events, &executors(), &["stranded"]);
        assert!(
            tolerated.violations.is_empty(),
            "{:?}",
            tolerated.violations
        );
        assert_eq!(tolerated.known_defects.len(), 1);
        let mut killed = executors();
        killed.get_mut("e2").unwrap().killed = Some(105 * S);
        killed.get_mut("e2").unwrap().held = vec![0];
        let outcome = run(&rows, &events, &killed, &[]);
        assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
        // FAILED at its deadline with no retry left, never received: stranded too.
        let mut failed = vec![row(0, 3, Some("e1"))];
        failed[0].max_retries = 0;
        failed[0].errors = Some(vec!["maximum execution time of 8 s exceeded".into()]);
        violated(
            &run(&failed, &[], &executors(), &[]),
            "never reached an executor",
        );
        // Still RUNNING for an executor that never received it.
        violated(
            &run(&[row(0, 1, Some("e1"))], &[], &executors(), &[]),
            "never received it (stranded)",
        );
    }

    #[test]
    fn assignments_slower_than_the_bound_fail_and_pauses_do_not_count() {
        let (rows, mut events) = clean();
        events[0] = claim("e1", 0, 131 * S, 0, None);
        events[1] = done("e1", 0, 132 * S, End::Closed);
        violated(
            &run(&rows, &events, &executors(), &[]),
            "of assignments within 30 s",
        );
        let tolerate: Vec<String> = Vec::new();
        let outcome = check(&Inputs {
            rows: &rows,
            events: &events,
            executors: &executors(),
            acked: &[0],
            submits_refused: &[],
            pauses: &[(105 * S, 115 * S)],
            tolerate: &tolerate,
        });
        assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    }
}
