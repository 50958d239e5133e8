//! Every usage pattern of the API specification, as the examples of
//! `examples/`, on both backends: `memory::<example>` on the in-process
//! backend and `redis::<example>` on a real Redis, each in a namespace of its
//! own that is deleted afterwards, pass or fail.
//!
//! Redis is found as the other tests find it (`REDIS_URL`, else
//! 127.0.0.1:6379, else a `redis-server` started from `PATH`); without one
//! the Redis half fails and says how to get one.

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
#[path = "../examples/consume.rs"]
mod consume;
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

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use streams_redis::testing;
use xnai_streams::{ManagerConfig, MemoryBackend, RedisBackend};

const LIMIT: Duration = Duration::from_secs(30);

async fn on_memory<F, Fut>(name: &str, body: F)
where
    F: FnOnce(MemoryBackend, ManagerConfig) -> Fut,
    Fut: Future<Output = xnai_streams::Result<()>>,
{
    tokio::time::timeout(LIMIT, body(MemoryBackend::new(), ManagerConfig::default()))
        .await
        .unwrap_or_else(|_| panic!("`{name}` did not finish within {LIMIT:?}"))
        .expect("the example succeeds on the in-process backend");
}

/// Runs `body` against Redis in a fresh namespace, then deletes the namespace.
async fn on_redis<F, Fut>(name: &str, body: F)
where
    F: FnOnce(RedisBackend, ManagerConfig) -> Fut,
    Fut: Future<Output = xnai_streams::Result<()>>,
{
    let url = testing::redis_url();
    let namespace = format!("xt-spec-{}-{name}", std::process::id());
    let backend = testing::backend().await.expect("connect to the test Redis");
    let config = ManagerConfig::default().with_namespace(namespace.clone());
    let outcome = tokio::time::timeout(
        LIMIT,
        AssertUnwindSafe(body(backend, config)).catch_unwind(),
    )
    .await;
    testing::cleanup(&url, &namespace)
        .await
        .expect("clean up the test namespace");
    match outcome {
        Ok(Ok(result)) => result.expect("the example succeeds on Redis"),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("`{name}` did not finish within {LIMIT:?} on Redis"),
    }
}

macro_rules! on_both {
    ($($example:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $example() {
                    on_memory(stringify!($example), $example::run).await;
                }
            )*
        }
        mod redis {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $example() {
                    on_redis(stringify!($example), $example::run).await;
                }
            )*
        }
    };
}

on_both!(
    agent_bus_client,
    agent_coordination,
    claim_pending,
    consume,
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
