//! What the command tests share: a fresh namespace on the test Redis per
//! test, deleted afterwards even when the test fails, and the command
//! pointed at it.

#![allow(dead_code, reason = "each test file uses its own part")]

pub(crate) mod dashboard;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use streams_redis::testing;
use xnai_streams::{ConsumerGroupConfig, Manager, ManagerConfig, RedisBackend, RedisStreamManager};

/// The command under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_xnai-streams");

/// A namespace of its own on the test Redis (`REDIS_URL`, else
/// 127.0.0.1:6379, else a `redis-server` the tests start; with none of
/// them the test fails and says how to get one). Dropping it deletes every
/// key of the namespace.
pub(crate) struct Ns {
    pub(crate) url: String,
    pub(crate) name: String,
    rt: tokio::runtime::Runtime,
}

impl Ns {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        Self {
            url: testing::redis_url(),
            name: format!(
                "xt-cli-{}-{}-{tag}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            rt,
        }
    }

    /// The command, on this namespace of the test Redis.
    pub(crate) fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(BIN);
        cmd.env_remove("REDIS_URL")
            .args(["--redis", &self.url, "--namespace", &self.name])
            .timeout(std::time::Duration::from_secs(60));
        cmd
    }

    /// The command as a plain process, for tests that signal it.
    pub(crate) fn process(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(BIN);
        cmd.env_remove("REDIS_URL")
            .args(["--redis", &self.url, "--namespace", &self.name]);
        cmd
    }

    /// Runs a future to its end.
    pub(crate) fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A manager for `consumer` on this namespace.
    pub(crate) fn manager(&self, consumer: &str) -> RedisStreamManager {
        self.run(async {
            let backend = RedisBackend::connect(&self.url).await.expect("connect");
            let config = ManagerConfig::default()
                .with_namespace(self.name.clone())
                .with_consumer_id(consumer);
            Manager::new(backend, config).expect("a manager")
        })
    }

    /// Creates group `name` over `streams`, with a short block.
    pub(crate) fn group(&self, m: &RedisStreamManager, name: &str, streams: &[&str]) {
        let config = ConsumerGroupConfig::new(name, streams.iter().copied())
            .with_block(std::time::Duration::from_millis(100));
        self.run(m.create_consumer_group(&config))
            .expect("create group");
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if let Err(e) = self.rt.block_on(testing::cleanup(&self.url, &self.name)) {
            eprintln!("cannot clean up namespace `{}`: {e}", self.name);
        }
    }
}

/// Parses a command's stdout as JSON.
pub(crate) fn json(output: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The command's stdout.
pub(crate) fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The command's stderr, checked to be one `error:` line, no panic.
pub(crate) fn one_error_line(output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {text:?}");
    assert!(lines[0].starts_with("error: "), "{text:?}");
    assert!(!text.contains("panicked"), "{text:?}");
    text
}
