//! Scenario 7: a long transaction. One session holds a snapshot open while executors drain a
//! deep queue at full speed; throughput and assign p99 before, during and after, and dead tuples.
//! The "during" phase runs twice, first with assign()'s scan cursors turned off
//! (`colony_assign.scan_cursor_ttl = 0`, every scan from the head of the queue) to show what
//! they are for; the phase with cursors comes second, so it faces more dead entries.

use super::floor::{Cycle, closed_loop_keeping, sql_cycles};
use crate::env::{Bench, connect, spec, spinner};
use crate::measure::{Latencies, ms, rate, ratio};
use crate::report::{Section, Table, line_plot, target};
use serde_json::json;
use std::time::Duration;

const CLIENTS: usize = 16;

pub async fn run(b: &Bench) -> Section {
    let [before, during, after] = b.size.soak;
    let mut section = Section::new(
        "soak",
        "7. Long transaction soak",
        &format!(
            "{CLIENTS} SQL-direct clients drain a deep queue (assign + close) in 5 s windows: {}s before, then \
             while another session holds a REPEATABLE READ snapshot open (so nothing the drain leaves behind can be \
             vacuumed) {}s with assign()'s scan cursors off (`colony_assign.scan_cursor_ttl = 0`) and {}s with \
             them on (the default), {}s after it commits.",
            before.as_secs(),
            during.as_secs(),
            during.as_secs(),
            after.as_secs()
        ),
    );
    let db = b.fresh_db("soak").await;
    let names = db.executor_names(CLIENTS, "e", "t").await;
    let bar = spinner("soak: loading".into());
    let total_seconds = (before + during * 2 + after).as_secs_f64();
    db.submit_copies(
        &spec("t", None),
        ((total_seconds * 4000.0) as usize).max(b.size.floor_waiting),
    )
    .await;
    db.vacuum().await;
    let client = connect(&db.conninfo).await;
    let dead = || async {
        client
            .query_one("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'colony_assign.processes'::regclass", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let window = Duration::from_secs(5).min(before);
    let mut phases: Vec<(&str, f64, Latencies, i64)> = Vec::new();
    let mut series = Vec::new();
    let mut t = 0.0;
    let holder = connect(&db.conninfo).await;
    let mut with_cursors: Vec<Cycle> = sql_cycles(&db.conninfo, &names).await;
    let mut without_cursors: Vec<Cycle> = sql_cycles(
        &format!(
            "{} options='-c colony_assign.scan_cursor_ttl=0'",
            db.conninfo
        ),
        &names,
    )
    .await;
    for (phase, length) in [
        ("before", before),
        ("during, cursors off", during),
        ("during", during),
        ("after", after),
    ] {
        bar.set_message(format!("soak: {phase}"));
        if phase == "during, cursors off" {
            holder.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM colony_assign.colonies;").await.unwrap();
        }
        if phase == "after" {
            holder.batch_execute("COMMIT").await.unwrap();
        }
        let cycles = if phase == "during, cursors off" {
            &mut without_cursors
        } else {
            &mut with_cursors
        };
        let mut completed = 0.0;
        let mut latencies = Latencies::default();
        let mut elapsed = Duration::ZERO;
        while elapsed < length {
            let (per_second, l, back) = closed_loop_keeping(window, std::mem::take(cycles)).await;
            *cycles = back;
            completed += per_second * window.as_secs_f64();
            latencies.merge(&l);
            elapsed += window;
            t += window.as_secs_f64();
            series.push((t, per_second));
        }
        phases.push((
            phase,
            completed / elapsed.as_secs_f64(),
            latencies,
            dead().await,
        ));
    }
    bar.finish_and_clear();
    let mut table = Table::new(
        "",
        &[
            "phase",
            "cycles/s",
            "vs before",
            "cycle p99 ms",
            "dead tuples at end",
        ],
    );
    let base = phases[0].1;
    for (phase, per_second, latencies, dead) in &phases {
        table.row(vec![
            phase.to_string(),
            rate(*per_second),
            ratio(per_second / base),
            ms(latencies.p(99.0)),
            dead.to_string(),
        ]);
    }
    section.tables.push(table);
    let during_ratio = phases[2].1 / base;
    section.notes.push(format!(
        "Without scan cursors the same phase ran at {} of before: each scan walks the dead head of \
         the queue that the long transaction keeps from being cleaned.",
        ratio(phases[1].1 / base)
    ));
    section.targets.push(target(
        "throughput during / before",
        ">= 0.70",
        ratio(during_ratio),
        during_ratio >= 0.7,
    ));
    let plot = b.out_dir.join("soak.svg");
    line_plot(
        &plot,
        "Long transaction soak: cycles/s per window",
        "seconds",
        "cycles/s",
        &[("cycles/s".into(), series.clone())],
    );
    section.plots.push(format!(
        "bench/{}",
        plot.file_name().unwrap().to_string_lossy()
    ));
    section.raw = json!({"phases": phases.iter().map(|(p, r, l, d)| json!({"phase": p, "per_second": r, "latency": l.summary(), "dead_tuples": d})).collect::<Vec<_>>(),
        "series": series});
    b.drop_db(&db).await;
    section
}
