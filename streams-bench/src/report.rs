//! The report: rows, ratios to the baselines checked against the targets,
//! and the extra figures; printed as tables or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{Cell, CellAlignment, Table};
use serde::{Deserialize, Serialize};

use crate::Kind;
use crate::extras::{Footprint, Streaming};
use crate::stats::Figure;

/// What is measured of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Produce, msg/s.
    Produce,
    /// Consume and acknowledge, msg/s.
    Consume,
    /// End to end, msg/s.
    EndToEnd,
    /// Median latency at the fixed rate, µs.
    P50,
    /// 99th percentile latency at the fixed rate, µs.
    P99,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Short id.
    pub id: String,
    /// What it is.
    pub label: String,
    /// Its backend.
    pub kind: Kind,
    /// Messages per run.
    pub n: usize,
    /// Its figures by metric.
    pub figures: BTreeMap<Metric, Figure>,
    /// Peak resident memory of a consumer process, MiB.
    pub peak_rss_mib: Option<f64>,
}

impl Row {
    /// The median of a metric.
    pub fn median(&self, metric: Metric) -> Option<f64> {
        self.figures.get(&metric).map(|f| f.median)
    }
}

/// How a figure compares with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// At least this.
    AtLeast,
    /// At most this.
    AtMost,
    /// No target: for information.
    None,
}

/// A ratio or an absolute figure, and its target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// What it is (`batched e2e / raw pipelined Value e2e`).
    pub name: String,
    /// The figure (the median of per-run ratios, for ratios).
    pub value: Option<f64>,
    /// Its unit (`x` for ratios).
    pub unit: String,
    /// How it is judged.
    pub goal: Goal,
    /// The target.
    pub target: Option<f64>,
    /// Whether the target is met; `None` without a target or a figure.
    pub met: Option<bool>,
}

impl Check {
    /// A check of `value` against `goal target`.
    pub fn new(
        name: impl Into<String>,
        value: Option<f64>,
        unit: &str,
        goal: Goal,
        target: Option<f64>,
    ) -> Self {
        let met = match (value, target, goal) {
            (Some(v), Some(t), Goal::AtLeast) => Some(v >= t),
            (Some(v), Some(t), Goal::AtMost) => Some(v <= t),
            _ => None,
        };
        Self {
            name: name.into(),
            value,
            unit: unit.to_owned(),
            goal,
            target,
            met,
        }
    }
}

/// A figure outside the table (moves, claims, `redis-benchmark`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extra {
    /// Short id.
    pub id: String,
    /// What it is.
    pub label: String,
    /// Its unit.
    pub unit: String,
    /// The figure.
    pub figure: Figure,
}

/// Where and how the run was made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Setup {
    /// The command line.
    pub command: String,
    /// CPU cores.
    pub cores: usize,
    /// Load averages (1, 5, 15 min) when the run started.
    pub load_before: Option<[f64; 3]>,
    /// ... and when it ended.
    pub load_after: Option<[f64; 3]>,
    /// The Redis server's version, if Redis rows ran.
    pub redis_version: Option<String>,
    /// Whether the Redis was a private server started for the run.
    pub private_redis: bool,
    /// Messages per Redis run.
    pub n: usize,
    /// Messages per memory run.
    pub memory_n: usize,
    /// Interleaved runs.
    pub runs: usize,
    /// Bytes of one message's content (5 raw fields).
    pub raw_bytes: usize,
    /// Bytes of one message's JSON payload.
    pub json_bytes: usize,
    /// Latency runs: messages per second.
    pub latency_rate: u32,
    /// Latency runs: seconds each.
    pub latency_seconds: f64,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Where and how.
    pub setup: Setup,
    /// The table.
    pub rows: Vec<Row>,
    /// Moves, claims, `redis-benchmark`.
    pub extras: Vec<Extra>,
    /// The memory backend's footprint.
    pub footprint: Option<Footprint>,
    /// Resident memory while streaming through a capped stream.
    pub streaming: Option<Streaming>,
    /// Ratios and targets.
    pub checks: Vec<Check>,
    /// Measurements that failed, with why.
    pub failures: Vec<String>,
}

/// A figure for a table cell: thousands separated, or one decimal for small
/// values.
pub fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    if v.abs() < 10.0 {
        return format!("{v:.2}");
    }
    if v.abs() < 100.0 {
        return format!("{v:.1}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

fn cell(v: Option<f64>) -> Cell {
    Cell::new(v.map_or_else(String::new, format_number)).set_alignment(CellAlignment::Right)
}

impl Report {
    /// The row with this id.
    pub fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }

    /// The tables, as Markdown.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let s = &self.setup;
        if !s.command.is_empty() {
            let _ = writeln!(out, "command: {}", s.command);
        }
        let _ = writeln!(
            out,
            "{} cores, Redis {}{}, N = {} (memory {}), {} interleaved run(s), messages of {} B in 5 fields ({} B as JSON); latency at {} msg/s for {} s",
            s.cores,
            s.redis_version.as_deref().unwrap_or("-"),
            if s.private_redis {
                " (private server)"
            } else {
                ""
            },
            format_number(s.n as f64),
            format_number(s.memory_n as f64),
            s.runs,
            s.raw_bytes,
            s.json_bytes,
            s.latency_rate,
            s.latency_seconds
        );
        if let (Some(b), Some(a)) = (s.load_before, s.load_after) {
            let _ = writeln!(
                out,
                "load average before {:.2} {:.2} {:.2}, after {:.2} {:.2} {:.2}; {:.0} s",
                b[0], b[1], b[2], a[0], a[1], a[2], s.seconds
            );
        }
        out.push('\n');

        let mut table = Table::new();
        table.load_preset(ASCII_MARKDOWN).set_header(vec![
            "client",
            "N",
            "produce msg/s",
            "consume+ack msg/s",
            "end-to-end msg/s",
            "p50 µs",
            "p99 µs",
            "consumer peak RSS MiB",
        ]);
        for row in &self.rows {
            table.add_row(vec![
                Cell::new(format!("{} (`{}`)", row.label, row.id)),
                cell(Some(row.n as f64)),
                cell(row.median(Metric::Produce)),
                cell(row.median(Metric::Consume)),
                cell(row.median(Metric::EndToEnd)),
                cell(row.median(Metric::P50)),
                cell(row.median(Metric::P99)),
                cell(row.peak_rss_mib),
            ]);
        }
        let _ = writeln!(out, "{table}\n");

        if !self.extras.is_empty() {
            let mut table = Table::new();
            table
                .load_preset(ASCII_MARKDOWN)
                .set_header(vec!["figure", "median", "unit", "runs"]);
            for e in &self.extras {
                table.add_row(vec![
                    Cell::new(format!("{} (`{}`)", e.label, e.id)),
                    cell(Some(e.figure.median)),
                    Cell::new(&e.unit),
                    Cell::new(
                        e.figure
                            .runs
                            .iter()
                            .map(|v| format_number(*v))
                            .collect::<Vec<_>>()
                            .join(" / "),
                    ),
                ]);
            }
            let _ = writeln!(out, "{table}\n");
        }

        if let Some(f) = &self.footprint {
            let _ = writeln!(
                out,
                "memory backend footprint: {} entries, {:.0} B kept per entry for {:.0} B of content ({:.2}x)",
                format_number(f.entries as f64),
                f.kept_per_entry,
                f.content_per_entry,
                f.ratio
            );
        }
        if let Some(st) = &self.streaming {
            let _ = writeln!(
                out,
                "memory backend streaming {} messages through max_len {}: RSS max {:.1} MiB, growth {:+.1} MiB (samples: {})",
                format_number(st.messages as f64),
                st.max_len,
                st.max_mib,
                st.growth_mib,
                st.samples_mib
                    .iter()
                    .map(|v| format!("{v:.1}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        if self.footprint.is_some() || self.streaming.is_some() {
            out.push('\n');
        }

        if !self.checks.is_empty() {
            let mut table = Table::new();
            table.load_preset(ASCII_MARKDOWN).set_header(vec![
                "ratio or figure",
                "value",
                "target",
                "met",
            ]);
            for c in &self.checks {
                let value = c.value.map_or_else(
                    || "-".to_owned(),
                    |v| {
                        if c.unit == "x" {
                            format!("{v:.2}x")
                        } else {
                            format!("{} {}", format_number(v), c.unit)
                        }
                    },
                );
                let target = match (c.goal, c.target) {
                    (Goal::AtLeast, Some(t)) => format!(">= {}{}", fmt_target(t, &c.unit), ""),
                    (Goal::AtMost, Some(t)) => format!("<= {}", fmt_target(t, &c.unit)),
                    _ => String::new(),
                };
                let met = match c.met {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "",
                };
                table.add_row(vec![
                    Cell::new(&c.name),
                    Cell::new(value).set_alignment(CellAlignment::Right),
                    Cell::new(target),
                    Cell::new(met),
                ]);
            }
            let _ = writeln!(out, "{table}");
        }
        for f in &self.failures {
            let _ = writeln!(out, "FAILED: {f}");
        }
        out
    }
}

fn fmt_target(t: f64, unit: &str) -> String {
    if unit == "x" {
        format!("{t:.2}x")
    } else {
        format!("{} {unit}", format_number(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(format_number(1_234_567.4), "1,234,567");
        assert_eq!(format_number(999.6), "1,000");
        assert_eq!(format_number(12.34), "12.3");
        assert_eq!(format_number(0.0421), "0.04");
        assert_eq!(format_number(-5000.0), "-5,000");
        assert_eq!(format_number(f64::NAN), "-");
    }

    #[test]
    fn checks_judge_their_goal() {
        assert_eq!(
            Check::new("a", Some(1.2), "x", Goal::AtLeast, Some(1.0)).met,
            Some(true)
        );
        assert_eq!(
            Check::new("a", Some(1.2), "x", Goal::AtMost, Some(1.0)).met,
            Some(false)
        );
        assert_eq!(
            Check::new("a", None, "x", Goal::AtLeast, Some(1.0)).met,
            None
        );
        assert_eq!(Check::new("a", Some(1.0), "x", Goal::None, None).met, None);
    }
}
