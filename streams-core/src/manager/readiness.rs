//! Readiness: the cheap check for orchestrators' probes.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Manager;
use crate::backend::{Probe, StreamBackend};
use crate::codec::now_rfc3339;
use crate::error::{Result, StreamError};

/// How long the value a probe writes lives.
const PROBE_TTL: Duration = Duration::from_secs(10);

/// Whether the backend can take work now: the answer of
/// [`readiness`](crate::StreamManager::readiness).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
/// use streams_core::{Manager, ManagerConfig};
/// use streams_memory::MemoryBackend;
///
/// let manager = Manager::new(MemoryBackend::new(), ManagerConfig::default())?;
/// let readiness = manager.readiness().await?;
/// assert!(readiness.ready && readiness.accepts_writes);
/// assert_eq!(serde_json::to_value(&readiness).unwrap()["ready"], true);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Readiness {
    /// The backend answered and accepted a write.
    pub ready: bool,
    /// `"redis"` or `"memory"`.
    pub backend: String,
    /// Whether the backend answered at all (a refused write is an answer).
    pub reachable: bool,
    /// Whether it accepted the probe write (a server out of memory, or a
    /// read-only replica, answers but refuses).
    pub accepts_writes: bool,
    /// Round-trip time of the probe write, in milliseconds, if the backend
    /// answered.
    pub latency_ms: Option<f64>,
    /// Why it is not ready, in words.
    pub problem: Option<String>,
}

/// Whether an error means the backend did not answer (rather than refused).
fn unreachable(e: &StreamError) -> bool {
    matches!(
        e,
        StreamError::Connection { .. } | StreamError::Timeout { .. }
    )
}

impl<B: StreamBackend> Manager<B> {
    /// Whether the backend can take work: one small write, one round trip.
    /// See [`StreamManager::readiness`](crate::StreamManager::readiness).
    ///
    /// # Errors
    /// [`StreamError::Closed`]; a backend that cannot be reached or refuses
    /// the write gives a report that is not ready instead.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn readiness(&self) -> Result<Readiness> {
        self.ensure_open()?;
        Ok(self.probe().await)
    }

    /// Writes the probe key and reports how that went.
    pub(crate) async fn probe(&self) -> Readiness {
        let key = self.keys().probe();
        let value = format!("{} {}", self.consumer_id(), now_rfc3339());
        let started = Instant::now();
        let written = self
            .backend()
            .write_probe(Probe::new(&key, &value, PROBE_TTL))
            .await;
        let mut readiness = Readiness {
            ready: false,
            backend: self.backend().name().to_owned(),
            reachable: true,
            accepts_writes: false,
            latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
            problem: None,
        };
        match written {
            Ok(()) => {
                readiness.ready = true;
                readiness.accepts_writes = true;
            }
            Err(e) if unreachable(&e) => {
                readiness.reachable = false;
                readiness.latency_ms = None;
                readiness.problem = Some(format!("backend unreachable: {e}"));
            }
            Err(e) => readiness.problem = Some(format!("backend refuses writes: {e}")),
        }
        readiness
    }
}
