//! The worker example as a real process on Redis: it handles tasks, retries
//! the ones that fail, and on SIGTERM drains, reports and exits 0.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::json;
use streams_redis::testing;
use xnai_streams::{Manager, ManagerConfig, StreamBackend};

/// The example's binary, which `cargo test` builds next to the tests.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --example {name} --features signal`",
        path.display()
    );
    path
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_example_handles_tasks_and_drains_on_sigterm() {
    let url = testing::redis_url();
    let namespace = format!("xt-worker-{}", std::process::id());
    let mut child = Command::new(example("worker"))
        .env("REDIS_URL", &url)
        .env("XNAI_NAMESPACE", &namespace)
        .env("XNAI_CONSUMER_ID", "worker-1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the worker");
    let pid = child.id().to_string();
    let outcome = std::panic::AssertUnwindSafe(async {
        let backend = testing::backend().await.expect("connect");
        let config = ManagerConfig::default().with_namespace(namespace.clone());
        let producer = Manager::new(backend.clone(), config).unwrap();
        wait_for("the worker creating its group", async || {
            producer.group_config("workers").await.is_ok()
        })
        .await;
        for n in 0..20 {
            let prompt = if n % 10 == 3 { "" } else { "summarize" };
            producer
                .send_message(
                    "xnai:agent_bus",
                    json!({"task_id": format!("T-{n}"), "prompt": prompt}),
                    None,
                )
                .await
                .unwrap();
        }
        let key = producer.keys().stream("xnai:agent_bus");
        let schedule = producer.keys().retry_schedule("xnai:agent_bus", "workers");
        wait_for("every task handled", async || {
            let info = backend.groups(&key).await.unwrap();
            let retries = backend.schedule_len(&schedule).await.unwrap();
            info.first()
                .is_some_and(|g| g.pending == 0 && g.lag == Some(0))
                && retries == 2
        })
        .await;
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("send SIGTERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            exit.success(),
            "exit {exit:?}\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            stdout
                .lines()
                .filter(|l| l.ends_with("summarize done"))
                .count(),
            18,
            "{stdout}"
        );
        let summary = stdout
            .lines()
            .find_map(|l| l.strip_prefix("stopped: "))
            .expect("a summary");
        assert!(
            summary.starts_with("processed 20, acked 18, retried 2, dead-lettered 0"),
            "{summary}"
        );
        assert!(!summary.contains("grace period"), "{summary}");
    })
    .catch_unwind()
    .await;
    // Whatever happened, the worker does not outlive the test.
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
    testing::cleanup(&url, &namespace).await.expect("clean up");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
