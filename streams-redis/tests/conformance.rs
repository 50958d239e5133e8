//! The shared conformance suite against a real Redis (see
//! `streams_redis::testing::redis_url` for how the server is found).

use std::sync::Arc;

use async_trait::async_trait;
use streams_conformance::{DynBackend, TestBackend};
use streams_redis::{RedisBackend, testing};

/// Each case gets a fresh backend on the test server; every `connect` opens
/// new connections, as a second process would.
struct RedisHarness {
    url: String,
}

impl RedisHarness {
    fn new() -> Self {
        Self {
            url: testing::redis_url(),
        }
    }
}

#[async_trait]
impl TestBackend for RedisHarness {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn connect(&self) -> DynBackend {
        match RedisBackend::connect(&self.url).await {
            Ok(backend) => Arc::new(backend),
            Err(e) => panic!("cannot connect to the test Redis at {}: {e}", self.url),
        }
    }

    async fn cleanup(&self, namespace: &str) {
        if let Err(e) = testing::cleanup(&self.url, namespace).await {
            panic!("cannot clean up namespace `{namespace}`: {e}");
        }
    }
}

streams_conformance::conformance_suite!(RedisHarness::new());
