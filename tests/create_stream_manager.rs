//! `create_stream_manager(consumer_id)` connects to `REDIS_URL` and
//! initializes, in one call.
//!
//! The environment of a running process cannot be changed safely, so the
//! test runs itself again as a child process with `REDIS_URL` pointing at
//! the test Redis, and checks what the child wrote.

use std::process::Command;

use serde_json::json;
use streams_redis::testing;
use xnai_streams::StreamManager;

/// Set in the child: the stream it sends to.
const CHILD: &str = "XNAI_STREAMS_CHILD_STREAM";
const NAME: &str = "create_stream_manager_uses_redis_url";

#[tokio::test]
async fn create_stream_manager_uses_redis_url() {
    match std::env::var(CHILD) {
        Ok(stream) => child(&stream).await,
        Err(_) => parent().await,
    }
}

async fn parent() {
    let url = testing::redis_url();
    let namespace = format!("xt-convenience-{}", std::process::id());
    let stream = format!("{namespace}:stream");
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env("REDIS_URL", &url)
        .env(CHILD, &stream)
        .output()
        .expect("run the child");
    let backend = testing::backend().await.expect("connect");
    let length = xnai_streams::StreamBackend::len(&backend, &stream)
        .await
        .expect("XLEN");
    let deleted = testing::cleanup(&url, &namespace).await.expect("clean up");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The child ran the test, not an empty filter.
    assert!(stdout.contains("1 passed"), "{stdout}");
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
