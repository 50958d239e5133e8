//! The spec's message processing loop as one call: `consume` reads, runs
//! the handler, acknowledges, retries failures with backoff, dead-letters
//! them past the retry limit, and claims messages abandoned by crashed
//! agents, until it is told to stop.
//!
//! Run with `cargo run --example consume`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use xnai_streams::runner::{CancellationToken, ConsumeOptions, Job, Outcome};
use xnai_streams::{
    ConsumerGroupConfig, DlqConfig, Manager, ManagerConfig, MemoryBackend, Result, StreamBackend,
    StreamManagerExt,
};

/// Fails on tasks marked `"fail": true`.
async fn process_message(job: &Job<Value>) -> std::result::Result<(), String> {
    tokio::task::yield_now().await;
    if job.data.get("fail").and_then(Value::as_bool) == Some(true) {
        return Err(format!("cannot process task {}", job.data["task_id"]));
    }
    Ok(())
}

/// Sends ten tasks, one of which always fails, and consumes them. The run
/// stops once every task is settled so the example ends; a real agent runs
/// until shutdown (`until_signal`, feature `signal`).
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    // Retries come back quickly here; the spec's default backoff is 60 s.
    let dlq = DlqConfig::default()
        .with_retry_limit(2)
        .with_retry_backoff(Duration::from_millis(20));
    let manager = Manager::new(backend, config.with_consumer_id("cline-1").with_dlq(dlq))?;
    let group = ConsumerGroupConfig::new("agent_wavefront", ["xnai:agent_bus"]);
    manager.create_consumer_group(&group).await?;
    for n in 0..10 {
        let task = json!({"task_id": n, "fail": n == 7});
        manager.send_message("xnai:agent_bus", task, None).await?;
    }

    let stop = CancellationToken::new();
    let settled = Arc::new(AtomicUsize::new(0));
    let summary = manager
        .consume("agent_wavefront", {
            let (stop, settled) = (stop.clone(), Arc::clone(&settled));
            move |job: Job<Value>| {
                let (stop, settled) = (stop.clone(), Arc::clone(&settled));
                async move {
                    let result = process_message(&job).await;
                    // Nine successes, and the failing task's last attempt.
                    let last_attempt = result.is_ok() || job.retry_count() == 2;
                    if last_attempt && settled.fetch_add(1, Ordering::SeqCst) + 1 == 10 {
                        stop.cancel();
                    }
                    result.map(|()| Outcome::Ack)
                }
            }
        })
        .options(
            ConsumeOptions::default()
                .concurrency(4)
                .poll(Duration::from_millis(100)),
        )
        .shutdown_on(stop)
        .await?;
    println!("{summary}");
    assert_eq!(
        (summary.acked, summary.retried, summary.dead_lettered),
        (9, 2, 1)
    );
    let dead = manager.dead_letters(10).await?;
    println!("dead letter: {:?}", dead[0].dead_letter);
    manager.close().await
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}
