//! The shared conformance suite against a Redis Cluster: a private cluster
//! of three masters (`redis-server` processes on free ports, joined with
//! `redis-cli --cluster create`), started once for the whole suite and
//! stopped when the test ends, pass or fail. The cases run four at a time,
//! each in its own namespace, so their keys spread over every node.

use std::sync::Arc;

use async_trait::async_trait;
use streams_conformance::{DynBackend, TestBackend};
use streams_redis::testing::RedisCluster;
use streams_redis::{RedisBackend, RedisConfig};

struct ClusterHarness {
    /// The seed nodes, comma-separated.
    url: String,
    /// Stopped when the last case is done with the harness.
    _cluster: RedisCluster,
}

impl ClusterHarness {
    fn start() -> Self {
        let cluster = RedisCluster::start(3, 0).unwrap_or_else(|e| {
            panic!(
                "cannot start a private Redis Cluster ({e}); the cluster tests need \
                 `redis-server` and `redis-cli` 7.0 or newer on PATH (Debian: apt-get install \
                 redis-server redis-tools)"
            )
        });
        Self {
            url: cluster.urls().join(","),
            _cluster: cluster,
        }
    }

    fn config(&self) -> RedisConfig {
        RedisConfig::new(&self.url)
    }
}

#[async_trait]
impl TestBackend for ClusterHarness {
    fn name(&self) -> &'static str {
        "redis-cluster"
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }

    async fn connect(&self) -> DynBackend {
        match RedisBackend::from_config(self.config()).await {
            Ok(backend) => Arc::new(backend),
            Err(e) => panic!("cannot connect to the test cluster at {}: {e}", self.url),
        }
    }

    async fn cleanup(&self, namespace: &str) {
        let backend = match RedisBackend::from_config(self.config()).await {
            Ok(backend) => backend,
            Err(e) => panic!("cannot connect to the test cluster at {}: {e}", self.url),
        };
        if let Err(e) = backend.delete_namespace(namespace).await {
            panic!("cannot clean up namespace `{namespace}`: {e}");
        }
    }
}

streams_conformance::suite_cases!();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_suite_passes_on_a_cluster() {
    let harness = Arc::new(ClusterHarness::start());
    streams_conformance::run_all(harness, suite_cases(), 4).await;
}
