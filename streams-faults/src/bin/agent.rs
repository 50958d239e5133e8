//! The processes of the fault scenarios: `produce` sends numbered messages
//! and records each send that returned an id; `consume` runs the consume
//! runner over a group and records every handler start and settlement.
//! Both write their history with [`streams_conformance::checker::Recorder`].
//!
//! A message's payload says how its handler behaves:
//! `{"key": "p1-7", "work_ms": 2, "fail_pct": 5, "poison": false, "crash": false, "fail_first": false}`:
//! `crash` aborts the process (a crash loop), `poison` always fails (it
//! reaches the dead-letter queue past the retry limit), `fail_pct` fails
//! that share of attempts (decided by the key and attempt, so a rerun
//! behaves the same), `fail_first` fails the first attempt only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use streams_conformance::checker::Recorder;
use streams_core::runner::{ConsumeOptions, Job, Outcome};
use streams_core::{
    ConsumerGroupConfig, DlqConfig, Manager, ManagerConfig, RetryPolicy, StreamManagerExt,
};
use streams_redis::{RedisBackend, RedisConfig};

#[derive(Debug, Parser)]
struct Args {
    /// The Redis under test.
    #[arg(long)]
    url: String,
    /// The namespace of every key.
    #[arg(long)]
    namespace: String,
    /// Where the history files go.
    #[arg(long)]
    history: PathBuf,
    /// Response timeout of the connection, in ms.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sends `count` messages numbered from `start`, keyed `<name>-<n>`.
    Produce {
        #[arg(long)]
        name: String,
        #[arg(long)]
        stream: String,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Messages per second (0: as fast as sends return).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Handler time of each message.
        #[arg(long, default_value_t = 0)]
        work_ms: u64,
        /// Share of attempts that fail, in percent.
        #[arg(long, default_value_t = 0.0)]
        fail_pct: f64,
        /// Every n-th message is poison (0: none).
        #[arg(long, default_value_t = 0)]
        poison_every: u64,
        /// This message number crashes every consumer that takes it.
        #[arg(long)]
        crash: Option<u64>,
        /// Every message fails its first attempt.
        #[arg(long)]
        fail_first: bool,
    },
    /// Consumes a group with the runner until SIGTERM.
    Consume {
        #[arg(long)]
        group: String,
        #[arg(long = "stream", required = true)]
        streams: Vec<String>,
        #[arg(long)]
        consumer: String,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// The group's claim idle time, in ms.
        #[arg(long, default_value_t = 1000)]
        claim_idle_ms: u64,
        #[arg(long, default_value_t = 3)]
        retry_limit: u32,
        /// The handlers' hard timeout, in ms (0: none).
        #[arg(long, default_value_t = 0)]
        hard_timeout_ms: u64,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("fault agent: {e}");
        std::process::exit(1);
    }
}

async fn manager(
    args: &Args,
    consumer: &str,
    retry_limit: u32,
) -> streams_core::Result<Manager<RedisBackend>> {
    let config = RedisConfig::new(args.url.clone())
        .with_response_timeout(Duration::from_millis(args.timeout_ms))
        .with_connect_timeout(Duration::from_millis(args.timeout_ms))
        .with_reconnect_retries(1);
    let backend = RedisBackend::from_config(config).await?;
    let config = ManagerConfig::default()
        .with_namespace(args.namespace.clone())
        .with_consumer_id(consumer)
        .with_promote_interval(Duration::from_millis(100))
        .with_dlq(
            DlqConfig::default()
                .with_retry_limit(retry_limit)
                .with_retry_backoff(Duration::from_millis(20)),
        );
    Manager::new(backend, config)
}

async fn run(args: Args) -> Result<(), String> {
    match &args.command {
        Command::Produce { name, .. } => produce(&args, name).await,
        Command::Consume { consumer, .. } => consume(&args, consumer).await,
    }
}

/// Connects, retrying while the server is down (a restarted producer or
/// consumer may start during a fault).
async fn connect(args: &Args, consumer: &str, retry_limit: u32) -> Manager<RedisBackend> {
    let mut wait = Duration::from_millis(50);
    loop {
        match manager(args, consumer, retry_limit).await {
            Ok(m) => return m,
            Err(e) => {
                eprintln!("fault agent {consumer}: connecting: {e}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn produce(args: &Args, name: &str) -> Result<(), String> {
    let Command::Produce {
        stream,
        count,
        start,
        rate,
        work_ms,
        fail_pct,
        poison_every,
        crash,
        fail_first,
        ..
    } = &args.command
    else {
        return Ok(());
    };
    let history = Recorder::create(
        &args.history,
        &format!("producer-{name}-{}", std::process::id()),
    )
    .map_err(|e| e.to_string())?;
    let m = connect(args, name, 3).await;
    let gap = (*rate > 0).then(|| Duration::from_secs_f64(1.0 / *rate as f64));
    let mut next = tokio::time::Instant::now();
    let mut failures = 0u64;
    for n in *start..*start + *count {
        let key = format!("{name}-{n}");
        let data = json!({
            "key": key,
            "work_ms": work_ms,
            "fail_pct": fail_pct,
            "poison": *poison_every > 0 && n % poison_every == poison_every - 1,
            "crash": *crash == Some(n),
            "fail_first": fail_first,
        });
        // A send that failed may have been written anyway: sending again
        // is at-least-once, and the checker counts only sends that
        // returned an id.
        let mut wait = Duration::from_millis(20);
        loop {
            match m.send_message(stream, data.clone(), None).await {
                Ok(id) => {
                    history.sent(&key, stream, &id);
                    break;
                }
                Err(e) => {
                    failures += 1;
                    if !e.is_retryable() {
                        return Err(format!("send of {key}: {e}"));
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
            }
        }
        if let Some(gap) = gap {
            next += gap;
            tokio::time::sleep_until(next).await;
        }
    }
    history.note(name, &format!("produced {count}, failed sends {failures}"));
    Ok(())
}

/// Whether this attempt fails, decided by the key and attempt number.
fn unlucky(key: &str, attempt: u64, pct: f64) -> bool {
    if pct <= 0.0 {
        return false;
    }
    // FNV-1a: stable across runs and processes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % 10_000) as f64 / 100.0 < pct
}

async fn consume(args: &Args, consumer: &str) -> Result<(), String> {
    let Command::Consume {
        group,
        streams,
        concurrency,
        claim_idle_ms,
        retry_limit,
        hard_timeout_ms,
        ..
    } = &args.command
    else {
        return Ok(());
    };
    let history = Arc::new(
        Recorder::create(
            &args.history,
            &format!("consumer-{consumer}-{}", std::process::id()),
        )
        .map_err(|e| e.to_string())?,
    );
    let m = connect(args, consumer, *retry_limit).await;
    let claim_idle = Duration::from_millis(*claim_idle_ms);
    let config = ConsumerGroupConfig::new(group.clone(), streams.clone())
        .with_claim_idle(claim_idle)
        .with_block(Duration::from_millis(200))
        .with_retry(RetryPolicy::new(
            *retry_limit,
            Duration::from_millis(20),
            Duration::from_millis(200),
        ));
    let mut wait = Duration::from_millis(50);
    while let Err(e) = m.create_consumer_group(&config).await {
        eprintln!("fault agent {consumer}: creating the group: {e}");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
    let options = ConsumeOptions::default()
        .concurrency(*concurrency)
        .poll(Duration::from_millis(200))
        .claim_interval(Some(claim_idle / 2))
        .promote_interval(Duration::from_millis(100))
        .grace(Duration::from_secs(5))
        .hard_timeout((*hard_timeout_ms > 0).then(|| Duration::from_millis(*hard_timeout_ms)));
    let starts = Arc::clone(&history);
    let settles = Arc::clone(&history);
    let me = consumer.to_owned();
    let summary = m
        .consume(group, move |job: Job<Value>| {
            let history = Arc::clone(&starts);
            let me = me.clone();
            async move {
                let key = job.data["key"].as_str().unwrap_or_default().to_owned();
                history.started(&key, job.stream(), job.id(), &me, job.deliveries());
                if job.data["crash"].as_bool() == Some(true) {
                    eprintln!("fault agent {me}: {key} crashes this process");
                    std::process::abort();
                }
                let work = job.data["work_ms"].as_u64().unwrap_or(0);
                if work > 0 {
                    tokio::time::sleep(Duration::from_millis(work)).await;
                }
                let attempt = u64::from(job.retry_count()) + job.deliveries();
                let pct = job.data["fail_pct"].as_f64().unwrap_or(0.0);
                let (outcome, asked) = if job.data["poison"].as_bool() == Some(true) {
                    (
                        Err("poison: this message always fails".to_owned()),
                        "failed",
                    )
                } else if job.data["fail_first"].as_bool() == Some(true) && job.retry_count() == 0 {
                    (Ok(Outcome::retry()), "retry")
                } else if unlucky(&key, attempt, pct) {
                    (Err(format!("random failure (attempt {attempt})")), "failed")
                } else {
                    (Ok(Outcome::Ack), "ack")
                };
                // Before the runner acts on it: a kill between the ack and
                // its settlement's record still leaves this.
                history.finished(&key, job.stream(), job.id(), &me, asked);
                outcome
            }
        })
        .on_settled(move |s| {
            let key = s
                .message
                .data
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let consumer = s.message.delivery.as_ref().map_or("", |d| &*d.consumer);
            settles.settled(key, &s.message.stream, &s.message.id, consumer, s.how);
        })
        .options(options)
        .until_signal()
        .await
        .map_err(|e| e.to_string())?;
    history.note(consumer, &format!("summary: {summary}"));
    println!("{summary}");
    Ok(())
}
