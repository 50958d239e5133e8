//! A consumer written in Python (redis-py, with the client of
//! `docs/python/xnai_streams.py`) shares a group with Rust managers: it
//! receives a retry that a Rust consumer scheduled, promoting it itself,
//! with no Rust reader of the group running.
//!
//! Needs `python3` with redis-py (`pip install redis`); without them the
//! test fails and says so.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Ctx, run};
use serde_json::{Value, json};
use streams_core::backend::{PendingQuery, StreamBackend};
use streams_core::{ConsumerGroupConfig, DlqConfig, Manager, ManagerConfig};

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/python")
}

/// Runs a Python program with the client on its path; its stdout.
fn python(c: &Ctx, program: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(program)
        .env("PYTHONPATH", client_dir())
        .env("REDIS_URL", &c.url)
        .env("XNAI_NAMESPACE", &c.ns)
        .output()
        .expect("python3 on PATH (the Python interop test needs python3 and redis-py: pip install redis)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python failed{}:\n{stderr}",
        if stderr.contains("No module named 'redis'") {
            " (install redis-py: pip install redis)"
        } else {
            ""
        }
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_python_client_runs_the_library_s_promotion_script() {
    let script = std::fs::read_to_string(client_dir().join("promote_due.lua")).unwrap();
    assert_eq!(
        script,
        streams_redis::PROMOTE_SCRIPT,
        "docs/python/promote_due.lua must be the library's promote_due.lua"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_consumer_receives_a_retry() {
    run("python", |c: Ctx| async move {
        let config = ManagerConfig::default()
            .with_namespace(c.ns.clone())
            .with_consumer_id("rust-1")
            .with_dlq(DlqConfig::default().with_retry_backoff(Duration::from_millis(300)));
        let m = Manager::new(c.backend.clone(), config).unwrap();
        m.create_consumer_group(
            &ConsumerGroupConfig::new("agents", ["tasks"]).with_block(Duration::from_millis(100)),
        )
        .await
        .unwrap();
        m.send_message("tasks", json!({"task": "T-1", "big": 1}), None)
            .await
            .unwrap();
        let got = m.read_messages("agents", None, None).await.unwrap();
        assert!(m.retry_with_error(&got[0], "tool timed out").await.unwrap());
        // The Rust consumer is gone; only the Python consumer reads now.
        m.close().await.unwrap();

        let out = python(
            &c,
            r#"
import json, time
from xnai_streams import Streams

s = Streams(consumer="py-1")
s.join("agents", "tasks")
deadline = time.time() + 10
got = []
while not got and time.time() < deadline:
    got = s.read("agents", "tasks", block_ms=100)
for msg in got:
    s.ack("agents", msg)
print(json.dumps(got))
"#,
        );
        let got: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        let msg = &got[0];
        assert_eq!(msg["data"], json!({"task": "T-1", "big": 1}));
        assert_eq!(msg["retry_count"], 1);
        assert_eq!(msg["error"], "tool timed out");
        assert_eq!(msg["from_retry"], true);

        // Acknowledged and deleted where it was read.
        let keys = streams_core::KeyLayout::new(
            Some(&c.ns),
            &DlqConfig::default(),
            &streams_core::RetryConfig::default(),
            "xnai:groups",
        )
        .unwrap();
        let ready = keys.retry_ready("tasks", "agents");
        assert_eq!(c.backend.len(&ready).await.unwrap(), 0);
        assert!(
            c.backend
                .pending(PendingQuery::new(&ready, "agents", 10))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            c.backend
                .schedule_len(&keys.retry_schedule("tasks", "agents"))
                .await
                .unwrap(),
            0
        );

        // And the Python producer's messages reach Rust managers.
        python(
            &c,
            "from xnai_streams import Streams\nStreams().send('tasks', {'from': 'python'})",
        );
        let config = ManagerConfig::default()
            .with_namespace(c.ns.clone())
            .with_consumer_id("rust-2");
        let m = Manager::new(c.backend.clone(), config).unwrap();
        let got = m
            .read_messages("agents", None, Some(Duration::from_secs(2)))
            .await
            .unwrap();
        assert_eq!(got[0].data["from"], "python");
        assert!(
            got[0]
                .mid
                .as_deref()
                .is_some_and(|mid| mid.starts_with("py-"))
        );
    })
    .await;
}
