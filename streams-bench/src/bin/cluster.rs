//! `xnai-cluster-bench`: throughput on one Redis against a three-master
//! Redis Cluster, measured in the same run on the same machine.
//!
//! It starts a private `redis-server` (one master) and a private cluster of
//! three masters (from `PATH`, no persistence), and runs the same workloads
//! on both, interleaved: producers sending by key to a stream split into
//! partitions, then a consume runner draining the group and acknowledging
//! every message. Figures are medians of the runs, in messages per second,
//! with the cluster's ratio to the single server.
//!
//! `cargo run --release -p streams-bench --bin xnai-cluster-bench -- --help`

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use comfy_table::{Cell, Table};
use serde_json::json;
use streams_bench::stats::median;
use streams_core::runner::{ConsumeOptions, Job, Outcome};
use streams_core::{ConsumerGroupConfig, Manager, ManagerConfig, StreamManagerExt};
use streams_redis::testing::{RedisCluster, RedisServer};
use streams_redis::{RedisBackend, RedisConfig};
use tokio_util::sync::CancellationToken;

/// Throughput on one Redis against a three-master Redis Cluster.
#[derive(Debug, Parser)]
#[command(name = "xnai-cluster-bench", version)]
struct Cli {
    /// Messages per run.
    #[arg(long, default_value_t = 100_000)]
    n: u64,
    /// Interleaved runs per configuration; figures are their medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Partitions of the stream.
    #[arg(long, default_value_t = 12)]
    partitions: u32,
    /// Concurrent producer tasks.
    #[arg(long, default_value_t = 16)]
    producers: u64,
    /// Messages per keyed batch.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Handlers running at once in the consume runner.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Print the figures as JSON too.
    #[arg(long)]
    json: bool,
}

/// The figures of one run.
#[derive(Debug, Clone, Copy)]
struct Figures {
    send: f64,
    consume: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn main_async(cli: Cli) -> streams_bench::Result<()> {
    let single = RedisServer::start()?;
    let cluster = RedisCluster::start(3, 0)?;
    let configs = [
        ("1 master", RedisConfig::new(single.url())),
        ("3 masters", RedisConfig::new(cluster.urls().join(","))),
    ];
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); configs.len()];
    for run in 0..cli.runs {
        for (i, (name, config)) in configs.iter().enumerate() {
            let figures = measure(&cli, config.clone(), &format!("xcb-{run}-{i}")).await?;
            eprintln!(
                "run {} on {name}: send {:.0}/s, consume {:.0}/s",
                run + 1,
                figures.send,
                figures.consume
            );
            runs[i].push(figures);
        }
    }
    let med = |i: usize, f: fn(&Figures) -> f64| -> f64 {
        median(&runs[i].iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
    };
    let (send1, send3) = (med(0, |f| f.send), med(1, |f| f.send));
    let (cons1, cons3) = (med(0, |f| f.consume), med(1, |f| f.consume));
    let mut table = Table::new();
    table.set_header(["workload", "1 master (msg/s)", "3 masters (msg/s)", "3 / 1"]);
    for (what, one, three) in [
        ("send by key", send1, send3),
        ("consume + ack", cons1, cons3),
    ] {
        table.add_row([
            Cell::new(what),
            Cell::new(format!("{one:.0}")),
            Cell::new(format!("{three:.0}")),
            Cell::new(format!("{:.2}", three / one.max(1.0))),
        ]);
    }
    println!(
        "{} messages per run, {} runs (medians), {} partitions, {} producers x {} per batch, \
         consume concurrency {}",
        cli.n, cli.runs, cli.partitions, cli.producers, cli.batch, cli.concurrency
    );
    println!("{table}");
    if cli.json {
        println!(
            "{}",
            json!({
                "n": cli.n, "runs": cli.runs, "partitions": cli.partitions,
                "send": {"one_master": send1, "three_masters": send3},
                "consume": {"one_master": cons1, "three_masters": cons3},
            })
        );
    }
    Ok(())
}

async fn manager(
    config: RedisConfig,
    namespace: &str,
    consumer: &str,
) -> streams_bench::Result<Manager<RedisBackend>> {
    let backend = RedisBackend::from_config(config).await?;
    Ok(Manager::new(
        backend,
        ManagerConfig::default()
            .with_namespace(namespace)
            .with_consumer_id(consumer),
    )?)
}

/// One run: `n` messages sent by key, then drained by a consume runner.
async fn measure(
    cli: &Cli,
    config: RedisConfig,
    namespace: &str,
) -> streams_bench::Result<Figures> {
    let admin = manager(config.clone(), namespace, "admin").await?;
    admin.declare_partitions("jobs", cli.partitions).await?;
    admin
        .create_consumer_group(&ConsumerGroupConfig::new("workers", ["jobs"]))
        .await?;
    let producer = Arc::new(manager(config.clone(), namespace, "producer").await?);
    let per_task = cli.n.div_ceil(cli.producers);
    let started = Instant::now();
    let tasks: Vec<_> = (0..cli.producers)
        .map(|p| {
            let (m, batch) = (Arc::clone(&producer), cli.batch);
            tokio::spawn(async move {
                let mut sent = 0;
                while sent < per_task {
                    let items = (sent..(sent + batch).min(per_task))
                        .map(|i| (format!("p{p}-k{}", i % 1000), json!({"p": p, "i": i})))
                        .collect::<Vec<_>>();
                    sent += items.len() as u64;
                    m.send_batch_keyed("jobs", items, None).await?;
                }
                Ok::<u64, streams_core::StreamError>(sent)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let send = total as f64 / started.elapsed().as_secs_f64();

    let consumer = manager(config.clone(), namespace, "c1").await?;
    let done = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let counter = Arc::clone(&done);
    let run = consumer
        .consume("workers", move |_job: Job<serde_json::Value>| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>(Outcome::Ack)
            }
        })
        .options(ConsumeOptions::default().concurrency(cli.concurrency))
        .shutdown_on(stop.clone());
    let started = Instant::now();
    let handle = tokio::spawn(run.into_future());
    while done.load(Ordering::Relaxed) < total {
        if started.elapsed() > Duration::from_secs(600) {
            return Err("the consumer did not drain the group within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let consume = total as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    handle.await??;
    admin.backend().delete_namespace(namespace).await?;
    Ok(Figures { send, consume })
}
