//! What a scenario reports, and how it is written: docs/BENCHMARKS.md (tables, targets,
//! plots), SVG plots next to it, and raw JSON.

use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Write;
use std::path::Path;

#[derive(Serialize, Deserialize)]
pub struct Table {
    pub caption: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(caption: &str, headers: &[&str]) -> Table {
        Table {
            caption: caption.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    fn markdown(&self, out: &mut String) {
        if !self.caption.is_empty() {
            let _ = writeln!(out, "{}\n", self.caption);
        }
        let _ = writeln!(out, "| {} |", self.headers.join(" | "));
        let _ = writeln!(
            out,
            "|{}|",
            self.headers
                .iter()
                .map(|_| "---")
                .collect::<Vec<_>>()
                .join("|")
        );
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out.push('\n');
    }
    /// Plain-text rendering for the terminal.
    pub fn print(&self) {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .chain([self.headers[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:>w$}", w = widths[i]))
                .collect::<Vec<_>>()
                .join("  ")
        };
        if !self.caption.is_empty() {
            println!("{}", self.caption);
        }
        println!("{}", line(&self.headers));
        for row in &self.rows {
            println!("{}", line(row));
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct Target {
    pub what: String,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

pub fn target(what: &str, goal: &str, measured: String, met: bool) -> Target {
    Target {
        what: what.into(),
        goal: goal.into(),
        measured,
        met,
    }
}

/// A scenario's report. Serialized whole (docs/bench/sections.json) so that `--merge` can
/// re-run some scenarios and keep the others' last results, each saying which run made it.
#[derive(Serialize, Deserialize)]
pub struct Section {
    pub id: String,
    /// The command and time that measured this section, filled in by `main` once it has run.
    #[serde(default)]
    pub produced: String,
    pub title: String,
    pub intro: String,
    pub tables: Vec<Table>,
    pub targets: Vec<Target>,
    pub plots: Vec<String>,
    pub notes: Vec<String>,
    pub raw: Value,
}

impl Section {
    pub fn new(id: &str, title: &str, intro: &str) -> Section {
        Section {
            id: id.into(),
            produced: String::new(),
            title: title.into(),
            intro: intro.into(),
            tables: Vec::new(),
            targets: Vec::new(),
            plots: Vec::new(),
            notes: Vec::new(),
            raw: Value::Null,
        }
    }

    pub fn print(&self) {
        println!("\n=== {} ===", self.title);
        for t in &self.tables {
            t.print();
            println!();
        }
        for t in &self.targets {
            println!(
                "[{}] {}: goal {}, measured {}",
                if t.met { "met" } else { "MISSED" },
                t.what,
                t.goal,
                t.measured
            );
        }
    }
}

pub fn markdown(header: &str, sections: &[Section]) -> String {
    let mut out = String::from(header);
    let all: Vec<&Target> = sections.iter().flat_map(|s| &s.targets).collect();
    if !all.is_empty() {
        out.push_str("## Targets at a glance\n\n| scenario | target | goal | measured | |\n|---|---|---|---|---|\n");
        for s in sections {
            for t in &s.targets {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    s.title,
                    t.what,
                    t.goal,
                    t.measured,
                    if t.met { "met" } else { "**missed**" }
                );
            }
        }
        out.push('\n');
    }
    for s in sections {
        let _ = writeln!(out, "## {}\n\n{}\n", s.title, s.intro);
        if !s.produced.is_empty() {
            let _ = writeln!(out, "_Measured by {}._\n", s.produced);
        }
        for t in &s.tables {
            t.markdown(&mut out);
        }
        for p in &s.plots {
            let _ = writeln!(out, "![{}]({p})\n", s.title);
        }
        for n in &s.notes {
            let _ = writeln!(out, "{n}\n");
        }
    }
    out
}

/// A line chart of named (x, y) series, as SVG.
pub fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) {
    let points = series.iter().flat_map(|(_, s)| s.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 >= x1 {
        x1 = x0 + 1.0;
    }
    let root = SVGBackend::new(path, (760, 400)).into_drawing_area();
    let _ = root.fill(&WHITE);
    let Ok(mut chart) = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, 0.0..(y1 * 1.1).max(1e-9))
    else {
        return;
    };
    let _ = chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw();
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        if let Ok(drawn) = chart.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        )) {
            drawn.label(name.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        }
    }
    let _ = chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw();
    let _ = root.present();
}
