//! A whole benchmark run: every selected row, phase after phase, run after
//! run (interleaved, so a slow minute of the machine touches every row
//! alike), then the extras, the consumers' peak RSS and the checks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::extras::{self, MoveKind};
use crate::report::{Check, Extra, Goal, Metric, Report, Row, Setup};
use crate::rss::{self, ChildReport};
use crate::stats::{Figure, median, percentile};
use crate::{Env, Kind, Pace, Result, Workload, rate, shape, timed_out, workloads};

/// Ids of the figures outside the table.
pub mod extra_ids {
    /// `redis-benchmark -P 64`.
    pub const REDIS_BENCHMARK: &str = "redis-benchmark";
    /// `retry_many` of every message.
    pub const RETRY_MANY: &str = "retry-many";
    /// `dead_letter_many` of every message.
    pub const DLQ_MANY: &str = "dlq-many";
    /// Retries, 64 in flight.
    pub const RETRY_BULK: &str = "retry-bulk";
    /// Dead-letter moves, 64 in flight.
    pub const DLQ_BULK: &str = "dlq-bulk";
    /// Retries, one at a time.
    pub const RETRY_ONE: &str = "retry-one";
    /// Dead-letter moves, one at a time.
    pub const DLQ_ONE: &str = "dlq-one";
    /// Claiming idle entries.
    pub const CLAIM: &str = "claim";
    /// Every extra, for `--only`.
    pub const ALL: [&str; 6] = [
        REDIS_BENCHMARK,
        RETRY_BULK,
        DLQ_BULK,
        RETRY_ONE,
        DLQ_ONE,
        CLAIM,
    ];
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Messages per Redis run.
    pub n: usize,
    /// Messages per memory run.
    pub memory_n: usize,
    /// Interleaved runs.
    pub runs: usize,
    /// Rows and extras to run, by id (all when empty). `memory-extras` names
    /// the footprint and streaming figures.
    pub only: Vec<String>,
    /// Rows and extras to leave out, by id.
    pub skip: Vec<String>,
    /// The latency runs' pace.
    pub pace: Pace,
    /// Measure each consumer's peak RSS in a child process.
    pub rss: bool,
    /// Moves per moves run.
    pub moves_n: usize,
    /// Idle entries per claim run.
    pub claim_n: usize,
    /// Entries of the footprint run.
    pub footprint_n: usize,
    /// Messages of the streaming run.
    pub streaming_n: usize,
    /// The streaming run's `max_len`.
    pub max_len: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            n: 100_000,
            memory_n: 1_000_000,
            runs: 3,
            only: Vec::new(),
            skip: Vec::new(),
            pace: Pace {
                rate: 2000,
                duration: Duration::from_secs(3),
            },
            rss: true,
            moves_n: 10_000,
            claim_n: 10_000,
            footprint_n: 1_000_000,
            streaming_n: 1_000_000,
            max_len: 10_000,
        }
    }
}

impl Options {
    /// Whether the row or extra `id` runs.
    pub fn selected(&self, id: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|o| o == id))
            && !self.skip.iter().any(|s| s == id)
    }

    /// Messages per run of a row: `memory_n` for the memory backend's
    /// rows, except its runner rows (whose speed is the runner's, not the
    /// backend's), which take `n` like the Redis rows.
    pub fn n_for(&self, w: &dyn Workload) -> usize {
        match w.kind() {
            Kind::Memory if !w.id().contains("consume") => self.memory_n,
            _ => self.n,
        }
    }
}

/// Load averages from `/proc/loadavg`.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Per-run figures, by row (or extra) and metric.
#[derive(Debug, Default)]
struct Runs(BTreeMap<(String, Metric), Vec<Option<f64>>>);

impl Runs {
    fn push(&mut self, id: &str, metric: Metric, run: usize, value: Option<f64>) {
        let v = self.0.entry((id.to_owned(), metric)).or_default();
        if v.len() <= run {
            v.resize(run + 1, None);
        }
        v[run] = value;
    }

    fn figure(&self, id: &str, metric: Metric) -> Option<Figure> {
        let runs = self.0.get(&(id.to_owned(), metric))?;
        Figure::of(runs.iter().flatten().copied().collect())
    }

    /// The median over runs of `a / b` within the same run.
    fn ratio(&self, a: (&str, Metric), b: (&str, Metric)) -> Option<f64> {
        let xs = self.0.get(&(a.0.to_owned(), a.1))?;
        let ys = self.0.get(&(b.0.to_owned(), b.1))?;
        let ratios: Vec<f64> = xs
            .iter()
            .zip(ys)
            .filter_map(|(x, y)| Some((*x)? / (*y)?))
            .collect();
        median(&ratios)
    }
}

/// Runs the benchmark. `env.redis` must be set for the Redis rows to run;
/// `say` hears progress.
///
/// # Errors
/// Only for what stops the whole run; a failed measurement is recorded in
/// [`Report::failures`] and the run goes on.
pub async fn run(env: &Env, opts: &Options, say: &(dyn Fn(&str) + Sync)) -> Result<Report> {
    let started = Instant::now();
    let mut report = Report {
        setup: Setup {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            load_before: load_average(),
            n: opts.n,
            memory_n: opts.memory_n,
            runs: opts.runs,
            raw_bytes: shape::raw_bytes(),
            json_bytes: shape::json_bytes(),
            latency_rate: opts.pace.rate,
            latency_seconds: opts.pace.duration.as_secs_f64(),
            ..Setup::default()
        },
        ..Report::default()
    };
    if let Some(url) = &env.redis {
        report.setup.redis_version = crate::server::version(url).await.ok();
    }
    let rows: Vec<Box<dyn Workload>> = workloads()
        .into_iter()
        .filter(|w| opts.selected(w.id()))
        .filter(|w| w.kind() == Kind::Memory || env.redis.is_some())
        .collect();
    let mut runs = Runs::default();
    let fail = |report: &mut Report, what: String, e: crate::Error| {
        say(&format!("FAILED {what}: {e}"));
        report.failures.push(format!("{what}: {e}"));
    };

    for run in 0..opts.runs {
        for w in &rows {
            let id = w.id();
            let n = opts.n_for(w.as_ref());
            let phases = w.phases();
            if phases.produce {
                say(&format!("run {}: {id}: produce {n}", run + 1));
                match timed_out(id, w.produce(env, n)).await {
                    Ok(took) => runs.push(id, Metric::Produce, run, Some(rate(n, took))),
                    Err(e) => fail(&mut report, format!("{id} produce"), e),
                }
            }
            if phases.consume {
                say(&format!("run {}: {id}: consume+ack {n}", run + 1));
                let measured = timed_out(id, async {
                    let target = w.prefill(env, n).await?;
                    let took = w.consume(env, &target, n).await;
                    env.cleanup(&target).await?;
                    took
                })
                .await;
                match measured {
                    Ok(took) => runs.push(id, Metric::Consume, run, Some(rate(n, took))),
                    Err(e) => fail(&mut report, format!("{id} consume"), e),
                }
            }
            if phases.end_to_end {
                say(&format!("run {}: {id}: end-to-end {n}", run + 1));
                match timed_out(id, w.end_to_end(env, n)).await {
                    Ok(took) => runs.push(id, Metric::EndToEnd, run, Some(rate(n, took))),
                    Err(e) => fail(&mut report, format!("{id} end-to-end"), e),
                }
            }
            if phases.latency {
                say(&format!(
                    "run {}: {id}: latency at {} msg/s",
                    run + 1,
                    opts.pace.rate
                ));
                match timed_out(id, w.latency(env, opts.pace)).await {
                    Ok(l) => {
                        runs.push(id, Metric::P50, run, percentile(&l, 50.0, 0.05));
                        runs.push(id, Metric::P99, run, percentile(&l, 99.0, 0.05));
                    }
                    Err(e) => fail(&mut report, format!("{id} latency"), e),
                }
            }
        }
        if let Some(url) = env.redis.as_deref() {
            extras_run(env, url, opts, run, &mut runs, &mut report, say).await;
        }
    }

    for w in &rows {
        let id = w.id();
        let mut figures = BTreeMap::new();
        for metric in [
            Metric::Produce,
            Metric::Consume,
            Metric::EndToEnd,
            Metric::P50,
            Metric::P99,
        ] {
            if let Some(f) = runs.figure(id, metric) {
                figures.insert(metric, f);
            }
        }
        let peak_rss_mib = if opts.rss && w.phases().consume {
            say(&format!("{id}: consumer peak RSS (child process)"));
            match consumer_rss(env, w.as_ref(), opts.n_for(w.as_ref())).await {
                Ok(r) => Some(rss::mib(r.peak)),
                Err(e) => {
                    fail(&mut report, format!("{id} peak RSS"), e);
                    None
                }
            }
        } else {
            None
        };
        report.rows.push(Row {
            id: id.to_owned(),
            label: w.label().to_owned(),
            kind: w.kind(),
            n: opts.n_for(w.as_ref()),
            figures,
            peak_rss_mib,
        });
    }
    for (id, label, unit) in [
        (
            extra_ids::REDIS_BENCHMARK,
            "redis-benchmark -P 64 XADD, same fields (the server's limit)",
            "msg/s",
        ),
        (
            extra_ids::RETRY_MANY,
            "retry_many of 10,000 messages (moves in bulk)",
            "msg/s",
        ),
        (
            extra_ids::DLQ_MANY,
            "dead_letter_many of 10,000 messages (moves in bulk)",
            "msg/s",
        ),
        (
            extra_ids::RETRY_BULK,
            "retry_message, 64 in flight",
            "msg/s",
        ),
        (extra_ids::DLQ_BULK, "send_to_dlq, 64 in flight", "msg/s"),
        (
            extra_ids::RETRY_ONE,
            "retry_message, one at a time",
            "msg/s",
        ),
        (extra_ids::DLQ_ONE, "send_to_dlq, one at a time", "msg/s"),
        (
            extra_ids::CLAIM,
            "claim_pending_messages of 10,000 idle entries",
            "s",
        ),
    ] {
        if let Some(figure) = runs.figure(id, Metric::Produce) {
            report.extras.push(Extra {
                id: id.to_owned(),
                label: label.replace(
                    "10,000",
                    &crate::report::format_number(if id == extra_ids::CLAIM {
                        opts.claim_n as f64
                    } else {
                        opts.moves_n as f64
                    }),
                ),
                unit: unit.to_owned(),
                figure,
            });
        }
    }

    if opts.selected("memory-extras") {
        say("memory backend footprint (child process)");
        let args = [
            "--child".to_owned(),
            "footprint".to_owned(),
            "--n".to_owned(),
            opts.footprint_n.to_string(),
        ];
        match child_extra(&args) {
            Ok(v) => report.footprint = serde_json::from_value(v).ok(),
            Err(e) => fail(&mut report, "memory footprint".to_owned(), e),
        }
        say("memory backend streaming through a capped stream (child process)");
        let args = [
            "--child".to_owned(),
            "streaming".to_owned(),
            "--n".to_owned(),
            opts.streaming_n.to_string(),
            "--max-len".to_owned(),
            opts.max_len.to_string(),
        ];
        match child_extra(&args) {
            Ok(v) => report.streaming = serde_json::from_value(v).ok(),
            Err(e) => fail(&mut report, "memory streaming".to_owned(), e),
        }
    }

    report.checks = checks(&runs, &report, opts.claim_n);
    report.setup.load_after = load_average();
    report.setup.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn child_extra(args: &[String]) -> Result<serde_json::Value> {
    Ok(rss::run_child(args)?.extra)
}

async fn extras_run(
    env: &Env,
    url: &str,
    opts: &Options,
    run: usize,
    runs: &mut Runs,
    report: &mut Report,
    say: &(dyn Fn(&str) + Sync),
) {
    let mut record = |id: &str, r: Result<f64>| match r {
        Ok(v) => runs.push(id, Metric::Produce, run, Some(v)),
        Err(e) => {
            say(&format!("FAILED {id}: {e}"));
            report.failures.push(format!("{id}: {e}"));
        }
    };
    if opts.selected(extra_ids::REDIS_BENCHMARK) {
        say(&format!("run {}: redis-benchmark -P 64", run + 1));
        let key = format!("{}:redis-benchmark", env.fresh());
        record(
            extra_ids::REDIS_BENCHMARK,
            timed_out(
                "redis-benchmark",
                crate::server::redis_benchmark(url, &key, opts.n),
            )
            .await,
        );
    }
    for (id, kind, in_flight) in [
        (extra_ids::RETRY_MANY, MoveKind::RetryMany, 1),
        (extra_ids::DLQ_MANY, MoveKind::DeadLetterMany, 1),
        (extra_ids::RETRY_BULK, MoveKind::Retry, 64),
        (extra_ids::DLQ_BULK, MoveKind::DeadLetter, 64),
        (extra_ids::RETRY_ONE, MoveKind::Retry, 1),
        (extra_ids::DLQ_ONE, MoveKind::DeadLetter, 1),
    ] {
        if opts.selected(id) {
            say(&format!("run {}: {id}: {} moves", run + 1, opts.moves_n));
            let r = timed_out(id, extras::moves(env, opts.moves_n, kind, in_flight)).await;
            record(id, r.map(|took| rate(opts.moves_n, took)));
        }
    }
    if opts.selected(extra_ids::CLAIM) {
        say(&format!(
            "run {}: claim {} idle entries",
            run + 1,
            opts.claim_n
        ));
        let r = timed_out("claim", extras::claim(env, opts.claim_n)).await;
        record(extra_ids::CLAIM, r.map(|took| took.as_secs_f64()));
    }
}

/// The peak RSS of a process that consumes `n` messages of the row (the
/// stream is filled by this process for Redis rows, by the child itself
/// for memory rows, whose data lives in the consumer's process).
async fn consumer_rss(env: &Env, w: &dyn Workload, n: usize) -> Result<ChildReport> {
    let mut args = vec![
        "--child".to_owned(),
        "consume".to_owned(),
        "--row".to_owned(),
        w.id().to_owned(),
        "--n".to_owned(),
        n.to_string(),
    ];
    let target = match w.kind() {
        Kind::Redis => {
            let target = w.prefill(env, n).await?;
            args.extend([
                "--redis".to_owned(),
                env.redis_url()?.to_owned(),
                "--namespace".to_owned(),
                target.namespace.clone(),
            ]);
            Some(target)
        }
        Kind::Memory => None,
    };
    let report = tokio::task::spawn_blocking(move || rss::run_child(&args)).await?;
    if let Some(target) = target {
        env.cleanup(&target).await?;
    }
    report
}

/// The ratios and targets of the performance work, from the same runs.
fn checks(runs: &Runs, report: &Report, claim_n: usize) -> Vec<Check> {
    use Goal::{AtLeast, AtMost, None as Info};
    use Metric::{Consume, EndToEnd, P99, Produce};
    let ratio = |name: &str, a: (&str, Metric), b: (&str, Metric), goal, target| {
        Check::new(name, runs.ratio(a, b), "x", goal, target)
    };
    let figure = |id: &str, metric| runs.figure(id, metric).map(|f| f.median);
    let mut out = vec![
        ratio(
            "batched e2e / raw pipelined Value e2e",
            ("batched", EndToEnd),
            ("raw-pipelined", EndToEnd),
            AtLeast,
            Some(1.0),
        ),
        ratio(
            "batched produce / raw pipelined Value produce",
            ("batched", Produce),
            ("raw-pipelined", Produce),
            Info,
            None,
        ),
        ratio(
            "batched consume+ack / raw pipelined Value consume+ack",
            ("batched", Consume),
            ("raw-pipelined", Consume),
            Info,
            None,
        ),
        ratio(
            "consume runner c64 e2e / raw pipelined Value e2e",
            ("consume-c64", EndToEnd),
            ("raw-pipelined", EndToEnd),
            AtLeast,
            Some(0.8),
        ),
        ratio(
            "consume runner c1 e2e / raw pipelined Value e2e",
            ("consume-c1", EndToEnd),
            ("raw-pipelined", EndToEnd),
            Info,
            None,
        ),
        ratio(
            "64 tasks send_message / raw 64 tasks XADD",
            ("64-tasks", Produce),
            ("raw-64-tasks", Produce),
            AtLeast,
            Some(1.0),
        ),
        ratio(
            "64 tasks send_message / raw pipelined Value produce",
            ("64-tasks", Produce),
            ("raw-pipelined", Produce),
            AtLeast,
            Some(0.5),
        ),
        ratio(
            "one per call produce / raw naive produce",
            ("single", Produce),
            ("raw-naive", Produce),
            AtLeast,
            Some(0.95),
        ),
        ratio(
            "one per call consume+ack / raw naive consume+ack",
            ("single", Consume),
            ("raw-naive", Consume),
            AtLeast,
            Some(0.95),
        ),
        ratio(
            "one per call e2e / raw naive e2e",
            ("single", EndToEnd),
            ("raw-naive", EndToEnd),
            AtLeast,
            Some(0.95),
        ),
        ratio(
            "one per call p99 / raw naive p99",
            ("single", P99),
            ("raw-naive", P99),
            AtMost,
            Some(1.3),
        ),
        ratio(
            "raw pipelined Value produce / redis-benchmark -P 64",
            ("raw-pipelined", Produce),
            (extra_ids::REDIS_BENCHMARK, Produce),
            Info,
            None,
        ),
        Check::new(
            "memory, one per call, produce",
            figure("mem-single", Produce),
            "msg/s",
            AtLeast,
            Some(2_000_000.0),
        ),
        Check::new(
            "memory, one per call, consume+ack",
            figure("mem-single", Consume),
            "msg/s",
            AtLeast,
            Some(1_500_000.0),
        ),
    ];
    // The memory rows run with their own N, so these compare medians.
    for (metric, what) in [
        (Produce, "produce"),
        (Consume, "consume+ack"),
        (EndToEnd, "e2e"),
    ] {
        let value = match (figure("mem-batched", metric), figure("batched", metric)) {
            (Some(m), Some(r)) => Some(m / r),
            _ => None,
        };
        out.push(Check::new(
            format!("memory batched {what} / Redis batched {what}"),
            value,
            "x",
            AtLeast,
            Some(10.0),
        ));
    }
    if let Some(f) = &report.footprint {
        out.push(Check::new(
            "memory kept per entry / content bytes",
            Some(f.ratio),
            "x",
            AtMost,
            Some(1.5),
        ));
    }
    if let Some(s) = &report.streaming {
        out.push(Check::new(
            "memory RSS while streaming through a capped stream (max)",
            Some(s.max_mib),
            "MiB",
            AtMost,
            Some(50.0),
        ));
    }
    for (id, name) in [
        (extra_ids::RETRY_MANY, "retry moves in bulk (retry_many)"),
        (
            extra_ids::DLQ_MANY,
            "dead-letter moves in bulk (dead_letter_many)",
        ),
    ] {
        out.push(Check::new(
            name,
            figure(id, Produce),
            "msg/s",
            AtLeast,
            Some(50_000.0),
        ));
    }
    out.push(Check::new(
        format!(
            "claim {} idle entries",
            crate::report::format_number(claim_n as f64)
        ),
        figure(extra_ids::CLAIM, Produce),
        "s",
        AtMost,
        Some(0.05),
    ));
    out.retain(|c| c.value.is_some());
    out
}

/// The child side of the consumers' peak RSS and of the memory extras: runs one job
/// and returns its report.
///
/// # Errors
/// Whatever the job fails with.
pub async fn child(
    job: &str,
    row: Option<&str>,
    n: usize,
    redis: Option<String>,
    namespace: Option<String>,
    max_len: u64,
) -> Result<ChildReport> {
    match job {
        "footprint" => extras::footprint_child(n).await,
        "streaming" => extras::streaming_child(n, max_len).await,
        "consume" => {
            let row = row.ok_or("--row is needed")?;
            let w = crate::workload(row).ok_or_else(|| format!("no row {row}"))?;
            let env = Env::new(redis, "child");
            let target = match namespace {
                Some(ns) => crate::Target::new(ns),
                None => w.prefill(&env, n).await?,
            };
            let start = rss::rss().unwrap_or(0);
            rss::reset_peak();
            let took = w.consume(&env, &target, n).await?;
            Ok(ChildReport {
                rss_start: start,
                peak: rss::peak().unwrap_or(0),
                seconds: took.as_secs_f64(),
                extra: serde_json::Value::Null,
            })
        }
        other => Err(format!("unknown child job {other}").into()),
    }
}
