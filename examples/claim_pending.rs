//! Claiming work abandoned by a crashed agent (spec: `claim_pending_messages()`).
//!
//! Run with `cargo run --example claim_pending`.

use std::time::Duration;

use serde_json::json;
use xnai_streams::{
    ConsumerGroupConfig, Manager, ManagerConfig, MemoryBackend, Result, StreamBackend,
};

/// cline-1 reads two tasks and dies; once they have been idle long enough,
/// cline-2 claims and finishes them.
pub async fn run<B: StreamBackend + Clone>(backend: B, config: ManagerConfig) -> Result<()> {
    let group = ConsumerGroupConfig::new("agent_wavefront", ["xnai:agent_bus"]);
    let crashed = Manager::new(backend.clone(), config.clone().with_consumer_id("cline-1"))?;
    crashed.create_consumer_group(&group).await?;
    for task in ["R004-1", "R004-2"] {
        crashed
            .send_message("xnai:agent_bus", json!({"task_id": task}), None)
            .await?;
    }
    let taken = crashed.read_messages("agent_wavefront", None, None).await?;
    println!("cline-1 took {} tasks and stopped", taken.len());
    drop(crashed);

    let survivor = Manager::new(backend, config.with_consumer_id("cline-2"))?;
    // Not idle long enough yet: nothing to claim.
    let idle = Duration::from_millis(300);
    assert!(
        survivor
            .claim_pending_messages("agent_wavefront", Some(idle))
            .await?
            .is_empty()
    );

    tokio::time::sleep(idle).await;
    // Each claim takes at most one message whose consumer died holding it
    // (it may be what killed it), so claim until nothing is left.
    let mut finished = 0;
    loop {
        let claimed = survivor
            .claim_pending_messages("agent_wavefront", Some(idle))
            .await?;
        if claimed.is_empty() {
            break;
        }
        for message in &claimed {
            println!(
                "cline-2 claimed {} ({:?})",
                message.data["task_id"], message.delivery
            );
            survivor.acknowledge(message, "agent_wavefront").await?;
            finished += 1;
        }
    }
    assert_eq!(finished, 2);
    survivor.close().await
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    run(MemoryBackend::new(), ManagerConfig::default()).await
}
