//! `create_stream_manager(consumer_id)` connects to `REDIS_URL` and
//! initializes, in one call.
//!
//! The environment of a running process cannot be changed safely, so this
//! test (it has no libtest harness) runs itself again as a child with
//! `REDIS_URL` pointing at the test Redis and checks what the child wrote.

use std::process::{Command, ExitCode};

use serde_json::json;
use streams_redis::testing;
use xnai_streams::StreamManager;

const CHILD: &str = "XNAI_STREAMS_CHILD_STREAM";

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match std::env::var(CHILD) {
        Ok(stream) => {
            runtime.block_on(child(&stream));
            ExitCode::SUCCESS
        }
        Err(_) => {
            parent(&runtime);
            println!("test create_stream_manager_uses_redis_url ... ok");
            ExitCode::SUCCESS
        }
    }
}

fn parent(runtime: &tokio::runtime::Runtime) {
    let url = testing::redis_url();
    let namespace = format!("xt-convenience-{}", std::process::id());
    let stream = format!("{namespace}:stream");
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .env("REDIS_URL", &url)
        .env(CHILD, &stream)
        .status()
        .expect("run the child");
    let length = runtime.block_on(async {
        let backend = testing::backend().await.expect("connect");
        xnai_streams::StreamBackend::len(&backend, &stream)
            .await
            .expect("XLEN")
    });
    let deleted = runtime
        .block_on(testing::cleanup(&url, &namespace))
        .expect("clean up");
    assert!(status.success(), "the child run failed");
    assert_eq!(
        length, 1,
        "the child sent one message through create_stream_manager"
    );
    assert_eq!(deleted, 1);
}

async fn child(stream: &str) {
    let manager = xnai_streams::create_stream_manager(Some("cline-1"))
        .await
        .expect("create_stream_manager connects to REDIS_URL");
    assert!(manager.is_initialized());
    assert_eq!(StreamManager::consumer_id(&manager), "cline-1");
    manager
        .send_message(stream, json!({"from": "create_stream_manager"}), None)
        .await
        .expect("send");
    manager.close().await.expect("close");
}
