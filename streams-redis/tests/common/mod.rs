//! Shared by the Redis-specific tests: a namespace per test, cleaned up
//! whether the test passes or fails.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use streams_core::Fields;
use streams_redis::{RedisBackend, testing};

/// What a test works with.
pub struct Ctx {
    pub url: String,
    pub ns: String,
    pub backend: RedisBackend,
}

impl Ctx {
    /// A key of this test's namespace.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{{{name}}}", self.ns)
    }
}

/// Runs `f` in a fresh namespace with a 30 s limit, then deletes the namespace.
pub async fn run<F, Fut>(name: &str, f: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let url = testing::redis_url();
    let ns = format!(
        "xt-{}-{}-{name}",
        std::process::id(),
        std::collections::hash_map::RandomState::new().hash_one(name) % 1_000_000
    );
    let backend = RedisBackend::connect(&url).await.expect("connect");
    let ctx = Ctx {
        url: url.clone(),
        ns: ns.clone(),
        backend,
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        AssertUnwindSafe(f(ctx)).catch_unwind(),
    )
    .await;
    testing::cleanup(&url, &ns).await.expect("cleanup");
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("test `{name}` hung"),
    }
}

/// Fields from string pairs.
pub fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                Bytes::copy_from_slice(k.as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            )
        })
        .collect()
}

/// Runs `redis-cli -u <url> args...` and returns its stdout.
pub fn redis_cli(url: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = std::process::Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .args(args)
        .output()
        .expect("redis-cli must be on PATH for the interoperability tests");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
