//! `xnai-streams demo`: a team of agents sharing work through one stream.
//!
//! A producer publishes tasks on `xnai:agent_bus`; three agents share them
//! through the group `agent_wavefront` and report progress on
//! `xnai:task_updates`, which an overseer follows through its own group.
//! Each task says how often it fails before it succeeds, so the run is the
//! same every time: flaky tasks are retried with backoff, one poison task
//! never succeeds and ends in the dead-letter queue, and one agent stops
//! mid-work, leaving tasks that another agent claims once they have been
//! idle long enough. The demo ends when every task is done or dead-lettered,
//! and prints what each agent did.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Args;

use crate::target::Target;
use serde_json::json;
use xnai_streams::{
    ConsumerGroupConfig, DlqConfig, Manager, ManagerConfig, MemoryBackend, RedisBackend, Result,
    RetryConfig, Stats, StreamBackend, StreamError, StreamMessage, StreamType,
};

const GROUP: &str = "agent_wavefront";
const OVERSEER_GROUP: &str = "mc_overseer";

/// Options of `xnai-streams demo` (with the global --redis, to run on
/// Redis, and --namespace, default a new one per run).
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Number of tasks to publish.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(4..=10_000))]
    tasks: u32,
    /// Number of agents (one of them stops mid-work).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=32))]
    agents: u32,
    /// Print only the summary.
    #[arg(long)]
    quiet: bool,
    /// With --redis: keep the demo's keys afterwards, to look at them with
    /// redis-cli (by default the namespace is deleted at the end).
    #[arg(long)]
    keep: bool,
}

/// What the agents have done, shared with the coordinator.
#[derive(Debug, Default)]
struct Ledger {
    completed: BTreeSet<String>,
    dead_lettered: BTreeSet<String>,
    duplicates: u32,
}

#[derive(Debug, Clone)]
struct Printer {
    started: Instant,
    quiet: bool,
}

impl Printer {
    fn say(&self, who: &str, what: impl AsRef<str>) {
        if !self.quiet {
            println!(
                "[{:>6.2}s] {who:<9} {}",
                self.started.elapsed().as_secs_f64(),
                what.as_ref()
            );
        }
    }
}

/// Runs the demo: in-process, or on the server `--redis` names (only when
/// given on the command line: `REDIS_URL` alone does not move the demo).
pub(crate) async fn run(args: DemoArgs, target: &Target) -> Result<()> {
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| format!("xnai-demo-{}", std::process::id()));
    match target.redis.clone() {
        Some(url) => {
            let backend = RedisBackend::connect(&url).await?;
            println!(
                "xnai-streams demo on Redis at {}, namespace `{namespace}`",
                redact(&url)
            );
            let keep = args.keep;
            let outcome = run_on(backend.clone(), namespace.clone(), args).await;
            if keep {
                println!("kept the keys: redis-cli --scan --pattern '{namespace}:*'");
            } else {
                let deleted = backend.delete_namespace(&namespace).await?;
                println!("deleted the demo's {deleted} keys (--keep keeps them)");
            }
            outcome
        }
        None => {
            println!("xnai-streams demo on the in-process backend");
            run_on(MemoryBackend::new(), namespace, args).await
        }
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

fn config(namespace: &str, consumer: &str) -> ManagerConfig {
    ManagerConfig::default()
        .with_namespace(namespace)
        .with_consumer_id(consumer)
        .with_dlq(
            DlqConfig::default()
                .with_retry_limit(3)
                .with_retry_backoff(Duration::from_millis(150)),
        )
        .with_retry(RetryConfig::default().with_backoff_cap(Duration::from_secs(2)))
}

async fn run_on<B: StreamBackend + Clone>(
    backend: B,
    namespace: String,
    args: DemoArgs,
) -> Result<()> {
    let printer = Printer {
        started: Instant::now(),
        quiet: args.quiet,
    };
    let tasks = args.tasks;
    let poison = tasks / 2 + 1;

    let producer = Manager::new(backend.clone(), config(&namespace, "producer"))?;
    producer.initialize().await?;
    let claim_idle = Duration::from_millis(800);
    producer
        .create_consumer_group(
            &ConsumerGroupConfig::new(GROUP, [StreamType::AgentBus])
                .with_batch_size(3)
                .with_block(Duration::from_millis(200))
                .with_claim_idle(claim_idle),
        )
        .await?;
    producer
        .create_consumer_group(
            &ConsumerGroupConfig::new(OVERSEER_GROUP, [StreamType::TaskUpdates])
                .with_block(Duration::from_millis(200)),
        )
        .await?;

    let payloads: Vec<serde_json::Value> = (1..=tasks)
        .map(|n| {
            // Every fifth task fails once, every seventh twice; one never succeeds.
            let fail_times = if n == poison {
                u32::MAX
            } else if n % 7 == 0 {
                2
            } else if n % 5 == 0 {
                1
            } else {
                0
            };
            json!({
                "task_id": format!("T-{n:03}"),
                "action": "analyze",
                "work_ms": 20 + (n % 4) * 10,
                "fail_times": fail_times,
            })
        })
        .collect();
    producer
        .send_batch(&StreamType::AgentBus, payloads, None)
        .await?;
    printer.say(
        "producer",
        format!(
            "published {tasks} tasks on {} (T-{poison:03} is poison)",
            StreamType::AgentBus
        ),
    );

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut agents = Vec::new();
    for n in 1..=args.agents {
        let name = format!("agent-{n}");
        let manager = Manager::new(backend.clone(), config(&namespace, &name))?;
        manager.initialize().await?;
        let crashes = n == args.agents;
        let task = tokio::spawn(agent(
            manager.clone(),
            name.clone(),
            crashes,
            Arc::clone(&ledger),
            printer.clone(),
        ));
        agents.push((name, manager, task));
    }

    let overseer = Manager::new(backend.clone(), config(&namespace, "overseer"))?;
    let mut updates_seen = 0u32;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for update in overseer
            .read_messages(OVERSEER_GROUP, Some(50), Some(Duration::from_millis(100)))
            .await?
        {
            updates_seen += 1;
            overseer.acknowledge(&update, OVERSEER_GROUP).await?;
        }
        let (done, dead) = {
            let l = ledger.lock().unwrap_or_else(PoisonError::into_inner);
            (l.completed.len() as u32, l.dead_lettered.len() as u32)
        };
        if done + dead >= tasks {
            break;
        }
        if Instant::now() > deadline {
            return Err(StreamError::Timeout {
                operation: "demo".to_owned(),
                after: Duration::from_secs(60),
            });
        }
    }
    for (_, _, task) in &agents {
        task.abort();
    }
    for update in overseer
        .read_messages(OVERSEER_GROUP, Some(100), Some(Duration::ZERO))
        .await?
    {
        updates_seen += 1;
        overseer.acknowledge(&update, OVERSEER_GROUP).await?;
    }
    printer.say(
        "overseer",
        format!(
            "followed {updates_seen} task updates on {}",
            StreamType::TaskUpdates
        ),
    );

    println!();
    println!(
        "{:<10} {:>6} {:>6} {:>8} {:>8} {:>6} {:>7}",
        "agent", "read", "acked", "retried", "claimed", "dlq", "failed"
    );
    let mut total = Stats::default();
    for (name, manager, _) in &agents {
        let s = manager.get_stats().await?;
        manager.close().await?;
        println!(
            "{name:<10} {:>6} {:>6} {:>8} {:>8} {:>6} {:>7}",
            s.messages_read,
            s.messages_acknowledged,
            s.messages_retried,
            s.messages_claimed,
            s.messages_dead_lettered,
            s.messages_failed
        );
        total.messages_read += s.messages_read;
        total.messages_acknowledged += s.messages_acknowledged;
        total.messages_retried += s.messages_retried;
        total.messages_claimed += s.messages_claimed;
        total.messages_dead_lettered += s.messages_dead_lettered;
        total.messages_failed += s.messages_failed;
    }
    println!(
        "{:<10} {:>6} {:>6} {:>8} {:>8} {:>6} {:>7}",
        "total",
        total.messages_read,
        total.messages_acknowledged,
        total.messages_retried,
        total.messages_claimed,
        total.messages_dead_lettered,
        total.messages_failed
    );

    let stats = producer.get_stats().await?;
    let dlq = producer.dead_letters(10).await?;
    println!();
    println!("dead-letter queue ({} entries):", stats.dlq_entries);
    for entry in &dlq {
        if let Some(d) = &entry.dead_letter {
            println!(
                "  {} from {} {} after {} retries: {}",
                entry
                    .data
                    .get("task_id")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?"),
                d.origin_stream,
                d.origin_id,
                entry.retry_count,
                d.reason
            );
        }
    }
    let (completed, dead_lettered, duplicates) = {
        let l = ledger.lock().unwrap_or_else(PoisonError::into_inner);
        (
            l.completed.len() as u32,
            l.dead_lettered.len() as u32,
            l.duplicates,
        )
    };
    println!();
    let complete = completed + dead_lettered == tasks;
    println!(
        "{} {tasks} tasks: {completed} completed, {dead_lettered} dead-lettered, {duplicates} duplicate deliveries",
        if complete {
            "all accounted for, of"
        } else {
            "NOT all accounted for, of"
        }
    );
    producer.close().await?;
    overseer.close().await?;
    if complete {
        Ok(())
    } else {
        Err(StreamError::config("the demo lost track of a task"))
    }
}

/// How one task goes: fail `fail_times` times, then succeed.
async fn handle(message: &StreamMessage) -> std::result::Result<(), String> {
    let work = message
        .data
        .get("work_ms")
        .and_then(|v| v.as_u64())
        .unwrap_or(10);
    tokio::time::sleep(Duration::from_millis(work)).await;
    let fail_times = message
        .data
        .get("fail_times")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if u64::from(message.retry_count) < fail_times {
        Err(format!(
            "tool call failed (attempt {})",
            message.retry_count + 1
        ))
    } else {
        Ok(())
    }
}

fn task_id(message: &StreamMessage) -> String {
    message
        .data
        .get("task_id")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_owned()
}

/// One agent: read, handle, acknowledge or retry or dead-letter; claim
/// abandoned work. The crashing agent stops after its first task, holding
/// the rest of its batch.
async fn agent<B: StreamBackend>(
    manager: Manager<B>,
    name: String,
    crashes: bool,
    ledger: Arc<Mutex<Ledger>>,
    printer: Printer,
) -> Result<()> {
    loop {
        let mut batch = manager.read_messages(GROUP, None, None).await?;
        if crashes && batch.len() > 1 {
            let first = batch.remove(0);
            work_on(&manager, &name, first, &ledger, &printer).await?;
            printer.say(
                &name,
                format!(
                    "stops mid-work holding {} tasks ({})",
                    batch.len(),
                    batch.iter().map(task_id).collect::<Vec<_>>().join(", ")
                ),
            );
            return Ok(());
        }
        for message in batch {
            work_on(&manager, &name, message, &ledger, &printer).await?;
        }
        let claimed = manager.claim_pending_messages(GROUP, None).await?;
        if !claimed.is_empty() {
            printer.say(
                &name,
                format!(
                    "claimed {} abandoned tasks: {}",
                    claimed.len(),
                    claimed.iter().map(task_id).collect::<Vec<_>>().join(", ")
                ),
            );
        }
        for message in claimed {
            work_on(&manager, &name, message, &ledger, &printer).await?;
        }
    }
}

async fn work_on<B: StreamBackend>(
    manager: &Manager<B>,
    name: &str,
    message: StreamMessage,
    ledger: &Mutex<Ledger>,
    printer: &Printer,
) -> Result<()> {
    let task = task_id(&message);
    match handle(&message).await {
        Ok(()) => {
            manager.acknowledge(&message, GROUP).await?;
            manager
                .send_message(
                    &StreamType::TaskUpdates,
                    json!({"agent_id": name, "task_id": task, "status": "done"}),
                    Some(10_000),
                )
                .await?;
            let fresh = ledger
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .completed
                .insert(task.clone());
            if !fresh {
                ledger
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .duplicates += 1;
            }
            let deliveries = message.delivery.as_ref().map_or(1, |d| d.deliveries);
            let note = match (message.retry_count, deliveries) {
                (0, 1) => String::new(),
                (0, d) => format!(" (delivered {d} times: its first agent stopped)"),
                (r, 1) => format!(" after {r} retries"),
                (r, d) => format!(" after {r} retries, delivered {d} times"),
            };
            printer.say(name, format!("done {task}{note}"));
        }
        Err(error) => {
            if manager.retry_with_error(&message, &error).await? {
                let delay = manager.retry_delay(message.retry_count);
                printer.say(
                    name,
                    format!(
                        "{task} failed: {error}; retry {} in {delay:?}",
                        message.retry_count + 1
                    ),
                );
            } else {
                let reason = format!("retry limit reached: {error}");
                manager.send_to_dlq(&message, &reason, Some(GROUP)).await?;
                ledger
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .dead_lettered
                    .insert(task.clone());
                printer.say(
                    name,
                    format!("{task} is poison: sent to the dead-letter queue"),
                );
            }
        }
    }
    Ok(())
}
