//! The spec's `AgentBusClient`: `publish_task` and `subscribe_tasks`.
//!
//! Run with `cargo run --example agent_bus_client`.
//!
//! In the spec, `subscribe_tasks` filters a shared group's messages by agent
//! id. In a shared group each message reaches only one consumer, so a task
//! addressed to agent B could be delivered to agent A and never reach B. Here
//! each agent reads through a group of its own: every agent sees every task,
//! keeps its own and acknowledges the rest.

use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use xnai_streams::{
    ConsumerGroupConfig, Manager, ManagerConfig, MemoryBackend, Result, StreamBackend,
    StreamMessage, StreamType,
};

/// A thin client of the agent bus.
#[derive(Debug)]
pub struct AgentBusClient<B: StreamBackend> {
    stream_manager: Manager<B>,
}

impl<B: StreamBackend> AgentBusClient<B> {
    /// A client over a manager.
    pub fn new(stream_manager: Manager<B>) -> Self {
        Self { stream_manager }
    }

    /// Publishes a task for `agent_id` on the agent bus.
    pub async fn publish_task(&self, agent_id: &str, task: Value) -> Result<String> {
        self.stream_manager
            .send_message(
                &StreamType::AgentBus,
                json!({"agent_id": agent_id, "task": task}),
                None,
            )
            .await
    }

    /// The tasks addressed to `agent_id`, as they arrive. Each must be
    /// acknowledged with [`Self::done`].
    pub async fn subscribe_tasks(
        &self,
        agent_id: &str,
    ) -> Result<impl Stream<Item = Result<StreamMessage>> + use<B>> {
        let group = Self::group_of(agent_id);
        self.stream_manager
            .create_consumer_group(
                &ConsumerGroupConfig::new(group.clone(), [StreamType::AgentBus])
                    .with_block(Duration::from_millis(200)),
            )
            .await?;
        let manager = self.stream_manager.clone();
        let agent_id = agent_id.to_owned();
        Ok(self
            .stream_manager
            .subscribe(&group)
            .filter_map(move |item| {
                let manager = manager.clone();
                let group = group.clone();
                let agent_id = agent_id.clone();
                async move {
                    match item {
                        Ok(message)
                            if message.data.get("agent_id").and_then(Value::as_str)
                                == Some(&agent_id) =>
                        {
                            Some(Ok(message))
                        }
                        // Someone else's task: not ours to handle.
                        Ok(message) => manager.acknowledge(&message, &group).await.err().map(Err),
                        Err(e) => Some(Err(e)),
                    }
                }
            }))
    }

    /// Acknowledges a task from [`Self::subscribe_tasks`].
    pub async fn done(&self, agent_id: &str, message: &StreamMessage) -> Result<bool> {
        self.stream_manager
            .acknowledge(message, &Self::group_of(agent_id))
            .await
    }

    fn group_of(agent_id: &str) -> String {
        format!("tasks_{agent_id}")
    }
}

/// cline-1 and cline-2 each receive exactly their own tasks.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let client_1 = AgentBusClient::new(Manager::new(
        backend.clone(),
        config.clone().with_consumer_id("cline-1"),
    )?);
    let client_2 = AgentBusClient::new(Manager::new(backend, config.with_consumer_id("cline-2"))?);
    let tasks_1 = client_1.subscribe_tasks("cline-1").await?;
    let tasks_2 = client_2.subscribe_tasks("cline-2").await?;

    for (agent, task) in [
        ("cline-1", "index"),
        ("cline-2", "review"),
        ("cline-1", "summarize"),
    ] {
        client_1.publish_task(agent, json!({"kind": task})).await?;
    }

    let mine: Vec<StreamMessage> = tasks_1.take(2).map(|m| m.expect("task")).collect().await;
    for message in &mine {
        println!("cline-1 got {}", message.data["task"]["kind"]);
        client_1.done("cline-1", message).await?;
    }
    let theirs: Vec<StreamMessage> = tasks_2.take(1).map(|m| m.expect("task")).collect().await;
    println!("cline-2 got {}", theirs[0].data["task"]["kind"]);
    client_2.done("cline-2", &theirs[0]).await?;

    assert_eq!(mine[0].data["task"]["kind"], "index");
    assert_eq!(mine[1].data["task"]["kind"], "summarize");
    assert_eq!(theirs[0].data["task"]["kind"], "review");
    Ok(())
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}
