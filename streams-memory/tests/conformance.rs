//! The shared conformance suite, run against [`MemoryBackend`].

use async_trait::async_trait;
use streams_conformance::{DynBackend, TestBackend};
use streams_memory::MemoryBackend;

/// One backend per case; every connection of the case shares its data.
#[derive(Debug, Default)]
struct MemoryHarness {
    backend: MemoryBackend,
}

#[async_trait]
impl TestBackend for MemoryHarness {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn connect(&self) -> DynBackend {
        std::sync::Arc::new(self.backend.clone())
    }

    async fn cleanup(&self, _namespace: &str) {
        // Each case gets a fresh backend, dropped with its harness.
    }
}

streams_conformance::conformance_suite!(MemoryHarness::default());
