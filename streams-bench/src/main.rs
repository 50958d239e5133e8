//! `xnai-streams-bench`: the benchmark's command line.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use streams_bench::run::{Options, child, run};
use streams_bench::{Env, Pace, server};

/// Measures xnai-streams against raw redis-crate loops and redis-benchmark
/// in the same run, and the in-process memory backend.
///
/// Without --redis it starts a private redis-server (from PATH) on a free
/// port, without persistence, and stops it at the end. Build in release:
/// `cargo run --release -p streams-bench -- [OPTIONS]`.
#[derive(Debug, Parser)]
#[command(name = "xnai-streams-bench", version)]
struct Cli {
    /// Messages per Redis run.
    #[arg(long, default_value_t = 100_000)]
    n: usize,
    /// Messages per memory-backend run.
    #[arg(long, default_value_t = 1_000_000)]
    memory_n: usize,
    /// Interleaved runs; figures are their medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Use this Redis instead of starting a private one. Its keys go under
    /// `--prefix` and are deleted after each measurement.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Run only the memory backend's rows.
    #[arg(long)]
    no_redis: bool,
    /// Only these rows or extras (ids, comma separated; see --list).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Leave out these rows or extras.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Messages per second of the latency runs.
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Seconds of each latency run.
    #[arg(long, default_value_t = 3.0)]
    latency_secs: f64,
    /// Skip the consumers' peak RSS (a child process per row).
    #[arg(long)]
    no_rss: bool,
    /// Moves per moves run.
    #[arg(long, default_value_t = 10_000)]
    moves_n: usize,
    /// Idle entries per claim run.
    #[arg(long, default_value_t = 10_000)]
    claim_n: usize,
    /// Entries of the memory footprint run, and messages of the streaming run.
    #[arg(long, default_value_t = 1_000_000)]
    footprint_n: usize,
    /// `max_len` of the streaming run.
    #[arg(long, default_value_t = 10_000)]
    max_len: u64,
    /// Prefix of every key written (a namespace per measurement under it).
    #[arg(long, default_value_t = format!("xb-{}", std::process::id()))]
    prefix: String,
    /// `TCP_NODELAY` of the raw clients: `on`, `off`, or (default) each
    /// workload's best: on for the naive loop, off for the others.
    #[arg(long, value_parser = ["on", "off", "best"], default_value = "best")]
    raw_nodelay: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Print a report saved with --json as tables, and exit.
    #[arg(long, value_name = "FILE")]
    from_json: Option<std::path::PathBuf>,
    /// List the rows and extras, and exit.
    #[arg(long)]
    list: bool,
    /// Internal: run one job in a child process and report it.
    #[arg(long, hide = true)]
    child: Option<String>,
    /// Internal: the row of a child job.
    #[arg(long, hide = true)]
    row: Option<String>,
    /// Internal: the namespace a child consumes from.
    #[arg(long, hide = true)]
    namespace: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_async(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn main_async(cli: Cli) -> streams_bench::Result<ExitCode> {
    streams_bench::raw::set_nodelay(match cli.raw_nodelay.as_str() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    });
    if let Some(job) = &cli.child {
        let report = child(
            job,
            cli.row.as_deref(),
            cli.n,
            cli.redis,
            cli.namespace,
            cli.max_len,
        )
        .await?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &cli.from_json {
        let report: streams_bench::Report = serde_json::from_slice(&std::fs::read(path)?)?;
        println!("{}", report.to_text());
        return Ok(ExitCode::SUCCESS);
    }
    if cli.list {
        for w in streams_bench::workloads() {
            println!("{:<22} {}", w.id(), w.label());
        }
        for id in streams_bench::run::extra_ids::ALL {
            println!("{id}");
        }
        println!("memory-extras");
        return Ok(ExitCode::SUCCESS);
    }
    let opts = Options {
        n: cli.n,
        memory_n: cli.memory_n,
        runs: cli.runs.max(1),
        only: cli.only,
        skip: cli.skip,
        pace: Pace {
            rate: cli.rate,
            duration: Duration::from_secs_f64(cli.latency_secs.max(0.1)),
        },
        rss: !cli.no_rss,
        moves_n: cli.moves_n,
        claim_n: cli.claim_n,
        footprint_n: cli.footprint_n,
        streaming_n: cli.footprint_n,
        max_len: cli.max_len,
    };
    let mut private = None;
    let redis = if cli.no_redis {
        None
    } else if let Some(url) = cli.redis {
        Some(url)
    } else {
        let server = server::start_private()?;
        let url = server.url();
        private = Some(server);
        Some(url)
    };
    let env = Env::new(redis, cli.prefix);
    let say = |line: &str| {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    };
    let outcome = run(&env, &opts, &say).await;
    if private.is_none() {
        // A measurement that failed midway leaves its keys on a shared Redis.
        env.sweep().await?;
    }
    let mut report = outcome?;
    report.setup.private_redis = private.is_some();
    report.setup.command = std::env::args().collect::<Vec<_>>().join(" ");
    drop(private);
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.to_text());
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
