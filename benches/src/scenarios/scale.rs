//! Scenario 6 (and issue 2's 1M-waiting figure): assign latency at growing queue depth over
//! 20 types x 10 locations, then every one of the processes through the system end to end,
//! with retention and vacuum keeping the table small.

use super::floor::{CLIENTS, closed_loop_keeping, sql_cycles};
use crate::env::{Bench, SqlCycle, connect, counter, spinner};
use crate::measure::{Latencies, ms, rate, ratio};
use crate::report::{Section, Table, line_plot, target};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, Statement};

const TYPES: usize = 20;
const LOCATIONS: usize = 10;

fn specs(from: usize, count: usize) -> Value {
    Value::Array(
        (from..from + count)
            .map(|i| json!({"funcname": "f", "maxexectime": 3600, "conditions": {
                "executortype": format!("t{}", i % TYPES), "locationname": format!("l{}", (i / TYPES) % LOCATIONS)}}))
            .collect(),
    )
}

/// Submits in batches of 10,000 until `depth` processes are waiting, numbering them on from
/// `submitted`.
async fn fill_to(
    client: &Client,
    submit: &Statement,
    waiting: &Statement,
    submitted: &mut usize,
    depth: usize,
) {
    let current: i64 = client.query_one(waiting, &[]).await.unwrap().get(0);
    let mut left = depth.saturating_sub(current as usize);
    let bar = counter(left as u64, format!("scale: loading to {depth} waiting"));
    while left > 0 {
        let n = left.min(10_000);
        client
            .query_one(submit, &[&specs(*submitted, n)])
            .await
            .unwrap();
        *submitted += n;
        left -= n;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
}

pub async fn run(b: &Bench) -> Section {
    let depths = &b.size.scale_depths;
    let mut section = Section::new(
        "scale",
        "6. Scale: queue depth, and a million processes end to end",
        &format!(
            "Waiting processes spread over {TYPES} executor types x {LOCATIONS} locations; one executor per \
             (type, location). Depth: {} assign() calls from one SQL client (prepared, autocommit, each followed by \
             close()) at each depth, cycling over the executors. End to end: {} processes drained by {CLIENTS} \
             SQL-direct clients (assign + close) with the colony's retention at 60 s, so the background reaper deletes \
             finished processes as they age and autovacuum keeps up; rate and assign latency per 10 s window.",
            b.size.scale_samples, b.size.scale_e2e
        ),
    );
    let db = b.fresh_db("scale").await;
    let executors: Vec<String> = {
        let client = db.client().await;
        let mut names = Vec::new();
        for t in 0..TYPES {
            for l in 0..LOCATIONS {
                let name = format!("e-t{t}-l{l}");
                client
                    .execute(
                        "SELECT colony_assign.add_executor('bench', $1, $2, $3)",
                        &[&name, &format!("t{t}"), &format!("l{l}")],
                    )
                    .await
                    .unwrap();
                names.push(name);
            }
        }
        names
    };
    let client = connect(&db.conninfo).await;
    let submit = client
        .prepare("SELECT count(*) FROM colony_assign.submit_many('bench', $1)")
        .await
        .unwrap();
    let SqlCycle { assign, close } = SqlCycle::prepare(&client).await;
    let waiting = client
        .prepare("SELECT waiting FROM colony_assign.stats('bench')")
        .await
        .unwrap();
    let mut submitted = 0usize;
    let mut depth_table = Table::new("", &["waiting", "assign p50 ms", "assign p99 ms", "max ms"]);
    let mut p99s = Vec::new();
    for &depth in depths {
        fill_to(&client, &submit, &waiting, &mut submitted, depth).await;
        db.vacuum().await;
        let bar = spinner(format!(
            "scale: {} assigns at depth {depth}",
            b.size.scale_samples
        ));
        let mut latencies = Latencies::default();
        for i in 0..b.size.scale_samples {
            let name = &executors[(i * 7) % executors.len()];
            let t0 = Instant::now();
            if let Some(row) = client.query_opt(&assign, &[name]).await.unwrap() {
                latencies.record(t0.elapsed());
                let id: i64 = row.get(0);
                client.execute(&close, &[&id, name]).await.unwrap();
            }
        }
        bar.finish_and_clear();
        depth_table.row(vec![
            depth.to_string(),
            ms(latencies.p(50.0)),
            ms(latencies.p(99.0)),
            ms(latencies.max()),
        ]);
        p99s.push((depth, latencies.p(99.0), latencies.summary()));
    }
    section.tables.push(depth_table);
    let deepest = *depths.last().unwrap();
    section.tables.push(listing_pages(&client, deepest).await);
    let buffers = buffers_per_assign(&db.conninfo, &executors[0], 200).await;
    section.notes.push(format!(
        "What one `assign()` reads and writes at {deepest} waiting: shared buffers touched per call, per \
         relation (from `pg_statio_user_tables` and `pg_statio_user_indexes` over 200 calls of one executor in \
         one session; the executor has a location, so both queue ranges are read; its session has claimed \
         before, so the scans start at its cursor). The claim runs below the SQL executor, so this is its \
         EXPLAIN (BUFFERS):\n\n{buffers}"
    ));
    let (first, last) = (p99s.first().unwrap(), p99s.last().unwrap());
    section.targets.push(target(
        &format!("assign p99 at {} vs at {} waiting", last.0, first.0),
        "<= 1.5x",
        format!(
            "{}x ({} ms vs {} ms)",
            ratio(last.1 / first.1),
            ms(last.1),
            ms(first.1)
        ),
        last.1 <= first.1 * 1.5,
    ));

    // End to end: top up to the e2e count, then drain with 50 clients.
    let target_total = b.size.scale_e2e;
    fill_to(&client, &submit, &waiting, &mut submitted, target_total).await;
    client
        .execute(
            "SELECT colony_assign.configure('bench', retention => interval '60 seconds')",
            &[],
        )
        .await
        .unwrap();
    let total: i64 = client.query_one(&waiting, &[]).await.unwrap().get(0);
    let bar = counter(total as u64, "scale: end to end".into());
    // Each client owns executors of several (type, location) pairs, so no pair goes unserved.
    let started = Instant::now();
    let mut windows: Vec<(f64, f64, f64, i64)> = Vec::new(); // (t, completed/s, assign p99 ms, dead tuples)
    let window = Duration::from_secs(10).min(b.size.measure * 2);
    let mut cycles = Vec::new();
    for chunk in executors.chunks(executors.len().div_ceil(CLIENTS)) {
        let mut rotating = sql_cycles(&db.conninfo, chunk).await;
        let mut k = 0usize;
        cycles.push(Box::new(move || {
            k = (k + 1) % rotating.len();
            (rotating[k])()
        }) as super::floor::Cycle);
    }
    loop {
        let (per_second, latencies, back) = closed_loop_keeping(window, cycles).await;
        cycles = back;
        let left: i64 = client.query_one(&waiting, &[]).await.unwrap().get(0);
        let dead: i64 = client
            .query_one("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'colony_assign.processes'::regclass", &[])
            .await
            .unwrap()
            .get(0);
        windows.push((
            started.elapsed().as_secs_f64(),
            per_second,
            latencies.p(99.0),
            dead,
        ));
        bar.set_position((total - left) as u64);
        if left == 0 || per_second == 0.0 {
            break;
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let tenth = (windows.len() / 10).max(1);
    let avg = |w: &[(f64, f64, f64, i64)]| w.iter().map(|x| x.2).sum::<f64>() / w.len() as f64;
    // The last window can be a partial one at the very end of the queue; leave it out.
    let body = &windows[..windows.len().saturating_sub(1).max(1)];
    let (start_p99, end_p99) = (
        avg(&body[..tenth.min(body.len())]),
        avg(&body[body.len().saturating_sub(tenth)..]),
    );
    let mut e2e = Table::new(
        "",
        &[
            "processes",
            "seconds",
            "sustained completions/s",
            "assign p99, first 10% of windows",
            "assign p99, last 10%",
        ],
    );
    e2e.row(vec![
        total.to_string(),
        format!("{seconds:.0}"),
        rate(total as f64 / seconds),
        format!("{} ms", ms(start_p99)),
        format!("{} ms", ms(end_p99)),
    ]);
    section.tables.push(e2e);
    section.targets.push(target(
        "end-to-end assign p99, end vs start",
        "<= 1.5x",
        format!("{}x", ratio(end_p99 / start_p99)),
        end_p99 <= start_p99 * 1.5,
    ));
    let plot = b.out_dir.join("scale-e2e.svg");
    line_plot(
        &plot,
        "1M end to end: completions/s and assign p99 per window",
        "seconds",
        "completions/s | p99 µs",
        &[
            (
                "completions/s".into(),
                windows.iter().map(|w| (w.0, w.1)).collect(),
            ),
            (
                "assign p99 (µs)".into(),
                windows.iter().map(|w| (w.0, w.2 * 1000.0)).collect(),
            ),
        ],
    );
    section.plots.push(format!(
        "bench/{}",
        plot.file_name().unwrap().to_string_lossy()
    ));
    section.raw = json!({"depths": p99s.iter().map(|(d, _, s)| json!({"waiting": d, "assign": s})).collect::<Vec<_>>(),
        "e2e": {"processes": total, "seconds": seconds, "windows": windows}});
    b.drop_db(&db).await;
    section
}

/// What a page of the admin listing (`list_processes`, what `GET /admin/colonies/{c}/processes`
/// runs) costs at the top, the middle and the end of a deep colony: keyset pages should cost
/// the same anywhere (docs/coordinator.md, "Listing processes").
async fn listing_pages(client: &tokio_postgres::Client, waiting: usize) -> Table {
    const CALLS: usize = 20;
    let (low, high): (i64, i64) = {
        let row = client
            .query_one(
                "SELECT min(id), max(id) FROM colony_assign.processes WHERE colony = 'bench'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let page = client
        .prepare(
            "SELECT next FROM colony_assign.list_processes('bench', after => $1, max_count => $2)",
        )
        .await
        .unwrap();
    let mut table = Table::new(
        &format!(
            "Listing pages at {waiting} processes in the colony (`list_processes`, newest first, {CALLS} calls \
             per cell, one session):"
        ),
        &["where", "100 per page, p50 ms", "1000 per page, p50 ms"],
    );
    // Cursors are `s:<id>` for the default order: the page starts below that id.
    for (place, after) in [
        ("top (newest)", None),
        ("middle", Some(format!("s:{}", low + (high - low) / 2))),
        ("end (oldest)", Some(format!("s:{}", low + 1100))),
    ] {
        let mut cells = vec![place.to_string()];
        for size in [100i32, 1000] {
            let mut latencies = Latencies::default();
            for _ in 0..CALLS {
                let t0 = Instant::now();
                client.query_one(&page, &[&after, &size]).await.unwrap();
                latencies.record(t0.elapsed());
            }
            cells.push(ms(latencies.p(50.0)));
        }
        table.row(cells);
    }
    table
}

/// Buffers one assign() touches at this depth, per relation: the counterpart of EXPLAIN
/// (BUFFERS) for a claim that runs below the SQL executor. Measured from the cumulative
/// statistics over `n` assigns of one executor in one session, after one assign that set the
/// session's scan cursor (the steady state). Only this session works meanwhile.
async fn buffers_per_assign(conninfo: &str, executor: &str, n: usize) -> String {
    let client = connect(conninfo).await;
    let assign = "SELECT id FROM colony_assign.assign('bench', $1)";
    client.query(assign, &[&executor]).await.unwrap();
    let counts =
        async |client: &tokio_postgres::Client| -> std::collections::BTreeMap<String, i64> {
            // Flush this session's counters and read fresh ones.
            client
                .batch_execute("SELECT pg_stat_force_next_flush()")
                .await
                .unwrap();
            client
                .query(
                    "SELECT relname, coalesce(heap_blks_hit, 0) + coalesce(heap_blks_read, 0)
                   FROM (SELECT pg_stat_clear_snapshot()) AS fresh, pg_statio_user_tables
                  WHERE schemaname = 'colony_assign'
                 UNION ALL
                 SELECT indexrelname, coalesce(idx_blks_hit, 0) + coalesce(idx_blks_read, 0)
                   FROM pg_statio_user_indexes WHERE schemaname = 'colony_assign'",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .collect()
        };
    let before = counts(&client).await;
    for _ in 0..n {
        client.query(assign, &[&executor]).await.unwrap();
    }
    let after = counts(&client).await;
    let mut rows: Vec<String> = after
        .iter()
        .filter_map(|(name, a)| {
            let delta = (a - before.get(name).copied().unwrap_or(0)) as f64 / n as f64;
            (delta >= 0.05).then(|| format!("| {name} | {delta:.1} |"))
        })
        .collect();
    if rows.is_empty() {
        rows.push("| (no buffer counted) | 0 |".into());
    }
    format!(
        "| relation | buffers per assign |\n|---|---|\n{}",
        rows.join("\n")
    )
}
