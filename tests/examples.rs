//! Every example of `examples/` (one per usage pattern of the API
//! specification) runs here on the in-process backend; `spec_on_redis.rs`
//! runs the same ones on Redis.

#[allow(unreachable_pub, dead_code)]
#[path = "../examples/agent_bus_client.rs"]
mod agent_bus_client;
#[allow(unreachable_pub, dead_code)]
#[path = "../examples/agent_coordination.rs"]
mod agent_coordination;
#[allow(unreachable_pub, dead_code)]
#[path = "../examples/claim_pending.rs"]
mod claim_pending;
#[allow(unreachable_pub, dead_code)]
#[path = "../examples/consumer_groups.rs"]
mod consumer_groups;
#[allow(unreachable_pub, dead_code)]
#[path = "../examples/context_manager.rs"]
mod context_manager;
#[allow(unreachable_pub, dead_code)]
#[path = "../examples/create_stream_manager.rs"]
mod create_stream_manager;
#[allow(unreachable_pub, dead_code)]
#[path = "../examples/dead_letter_queue.rs"]
mod dead_letter_queue;
#[allow(unreachable_pub, dead_code)]
#[path = "../examples/error_handling.rs"]
mod error_handling;
#[allow(unreachable_pub, dead_code)]
#[path = "../examples/initialize.rs"]
mod initialize;
#[allow(unreachable_pub, dead_code)]
#[path = "../examples/processing_loop.rs"]
mod processing_loop;
#[allow(unreachable_pub, dead_code)]
#[path = "../examples/retry.rs"]
mod retry;
#[allow(unreachable_pub, dead_code)]
#[path = "../examples/send_read_ack.rs"]
mod send_read_ack;
#[allow(unreachable_pub, dead_code)]
#[path = "../examples/stats.rs"]
mod stats;

use std::time::Duration;

use xnai_streams::{ManagerConfig, MemoryBackend};

macro_rules! on_memory {
    ($($example:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $example() {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    $example::run(MemoryBackend::new(), ManagerConfig::default()),
                )
                .await
                .expect("example finishes within 30 s")
                .expect("example succeeds");
            }
        )*
    };
}

on_memory!(
    agent_bus_client,
    agent_coordination,
    claim_pending,
    consumer_groups,
    context_manager,
    create_stream_manager,
    dead_letter_queue,
    error_handling,
    initialize,
    processing_loop,
    retry,
    send_read_ack,
    stats,
);
