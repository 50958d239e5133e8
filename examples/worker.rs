//! A worker: typed tasks, eight at a time, leases renewed while they run,
//! failures retried with backoff, a graceful stop on Ctrl-C or SIGTERM. Run
//! `cargo run --example worker --features signal` (`REDIS_URL`, `XNAI_NAMESPACE`).

use serde::Deserialize;
use xnai_streams::runner::{Job, Outcome};
use xnai_streams::{ConsumerGroupConfig, Manager, ManagerConfig, RedisBackend, StreamManagerExt};

#[derive(Deserialize)]
struct Task {
    task_id: String,
    prompt: String,
}

/// Stands in for a slow tool call that can fail.
async fn run_tool(task: &Task) -> Result<String, String> {
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    if task.prompt.is_empty() {
        return Err(format!("{}: nothing to do", task.task_id));
    }
    Ok(format!("{}: {} done", task.task_id, task.prompt))
}

#[tokio::main]
async fn main() -> xnai_streams::Result<()> {
    let manager = Manager::new(RedisBackend::from_env().await?, ManagerConfig::from_env()?)?;
    let group = ConsumerGroupConfig::new("workers", ["xnai:agent_bus"]);
    manager.create_consumer_group(&group).await?;
    let summary = manager
        .consume("workers", |job: Job<Task>| async move {
            println!("{}", run_tool(&job.data).await?); // Err: retried, then dead-lettered
            Ok::<_, String>(Outcome::Ack)
        })
        .concurrency(8)
        .until_signal()
        .await?;
    println!("stopped: {summary}");
    manager.close().await
}
