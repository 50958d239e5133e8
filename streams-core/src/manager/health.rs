//! Health: what an operator needs to see.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Manager;
use crate::backend::{Feature, PendingQuery, StreamBackend};
use crate::config::ConsumerGroupConfig;
use crate::error::Result;

/// Most pending entries examined per stream when counting claimable ones.
const CLAIMABLE_SCAN: usize = 1000;

/// The state of the backend and of every registered group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Reachable, and every group exists on all its streams.
    pub healthy: bool,
    /// `"redis"` or `"memory"`.
    pub backend: String,
    /// The server version, if it answered.
    pub server_version: Option<String>,
    /// Round-trip time of a ping, in milliseconds, if it answered.
    pub latency_ms: Option<f64>,
    /// This manager's consumer id.
    pub consumer_id: String,
    /// Every group of the registry and every group this manager knows.
    pub groups: Vec<GroupHealth>,
    /// Entries in the dead-letter stream(s).
    pub dlq_entries: u64,
    /// What looks wrong, in words.
    pub problems: Vec<String>,
}

/// One group's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupHealth {
    /// The group name.
    pub group: String,
    /// The group's claim threshold, in milliseconds.
    pub claim_idle_ms: u64,
    /// Each stream the group reads.
    pub streams: Vec<StreamHealth>,
}

/// A group's state on one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamHealth {
    /// The stream name.
    pub stream: String,
    /// Entries in the stream.
    pub length: u64,
    /// Whether the group exists on the stream.
    pub group_exists: bool,
    /// Entries delivered to the group and not yet acknowledged.
    pub pending: u64,
    /// Entries not yet delivered to the group, when known.
    pub lag: Option<u64>,
    /// Pending entries idle longer than the group's `claim_idle` (abandoned
    /// work waiting to be claimed), counted up to 1000.
    pub claimable: u64,
    /// Retries scheduled and not yet due.
    pub scheduled_retries: u64,
    /// Due retries waiting in (or being handled from) the group's ready stream.
    pub ready_retries: u64,
    /// The group's consumers on this stream.
    pub consumers: Vec<ConsumerHealth>,
}

/// A consumer's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConsumerHealth {
    /// The consumer name.
    pub name: String,
    /// Entries it holds.
    pub pending: u64,
    /// Milliseconds since it last interacted with the stream.
    pub idle_ms: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<B: StreamBackend> Manager<B> {
    /// Reachability, latency and the state of every group.
    /// See [`StreamManager::health`](crate::StreamManager::health).
    ///
    /// # Errors
    /// [`StreamError::Closed`](crate::StreamError::Closed); an unreachable
    /// backend gives an unhealthy report instead.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn health(&self) -> Result<HealthReport> {
        self.ensure_open()?;
        let mut report = HealthReport {
            healthy: false,
            backend: self.backend().name().to_owned(),
            server_version: None,
            latency_ms: None,
            consumer_id: self.consumer_id().to_owned(),
            groups: Vec::new(),
            dlq_entries: 0,
            problems: Vec::new(),
        };
        let started = Instant::now();
        if let Err(e) = self.backend().ping().await {
            report.problems.push(format!("backend unreachable: {e}"));
            return Ok(report);
        }
        report.latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        match self.initialize().await {
            Ok(()) => report.server_version = self.server_info().map(|s| s.version.clone()),
            Err(e) => {
                report.problems.push(e.to_string());
                return Ok(report);
            }
        }
        match self.collect_health(&mut report).await {
            // Waiting work is worth a warning; a group missing from a stream
            // or from the registry means reads fail or cannot find it.
            Ok(broken) => report.healthy = !broken,
            Err(e) => report.problems.push(format!("health check failed: {e}")),
        }
        Ok(report)
    }

    /// Fills in the groups; returns whether something is broken (not merely
    /// worth a look).
    async fn collect_health(&self, report: &mut HealthReport) -> Result<bool> {
        let mut broken = false;
        let mut configs: BTreeMap<String, ConsumerGroupConfig> = self
            .registered_groups()
            .await?
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect();
        for name in self.consumer_groups() {
            if let std::collections::btree_map::Entry::Vacant(slot) = configs.entry(name) {
                let config = self.group(slot.key()).await?.config.clone();
                report.problems.push(format!(
                    "group `{}` is missing from the group registry",
                    slot.key()
                ));
                broken = true;
                slot.insert(config);
            }
        }
        let backend = self.backend();
        let keys = self.keys();
        let mut dlq_keys = std::collections::BTreeSet::new();
        for config in configs.values() {
            if let Some(error) = self
                .cached_group_state(&config.name)
                .and_then(|g| g.lock_read().promote_error.clone())
            {
                report.problems.push(format!(
                    "due retries of group `{}` cannot be promoted: {error}",
                    config.name
                ));
                broken = true;
            }
            let mut group = GroupHealth {
                group: config.name.clone(),
                claim_idle_ms: millis(config.claim_idle),
                streams: Vec::new(),
            };
            for stream in &config.streams {
                let key = keys.stream(stream);
                dlq_keys.insert(keys.dlq(stream));
                let info = backend
                    .groups(&key)
                    .await?
                    .into_iter()
                    .find(|g| g.name == config.name);
                let schedule = keys.retry_schedule(stream, &config.name);
                let scheduled_retries = match backend.schedule_len(&schedule).await {
                    Ok(n) => n,
                    Err(e) => {
                        report
                            .problems
                            .push(format!("retry schedule `{schedule}` is unreadable: {e}"));
                        broken = true;
                        0
                    }
                };
                let mut health = StreamHealth {
                    stream: stream.clone(),
                    length: backend.len(&key).await?,
                    group_exists: info.is_some(),
                    pending: info.as_ref().map_or(0, |g| g.pending),
                    lag: info.as_ref().and_then(|g| g.lag),
                    claimable: 0,
                    scheduled_retries,
                    ready_retries: backend.len(&keys.retry_ready(stream, &config.name)).await?,
                    consumers: Vec::new(),
                };
                if health.group_exists {
                    if self.supports(Feature::ConsumerListing) {
                        health.consumers = backend
                            .consumers(&key, &config.name)
                            .await?
                            .into_iter()
                            .map(|c| ConsumerHealth {
                                name: c.name,
                                pending: c.pending,
                                idle_ms: millis(c.idle),
                            })
                            .collect();
                    }
                    health.claimable = backend
                        .pending(
                            PendingQuery::new(&key, &config.name, CLAIMABLE_SCAN)
                                .idle_at_least(config.claim_idle),
                        )
                        .await?
                        .len() as u64;
                    if health.claimable > 0 {
                        report.problems.push(format!(
                            "{} entries of `{stream}` have waited longer than {} ms in group `{}`: run claim_pending_messages",
                            health.claimable,
                            millis(config.claim_idle),
                            config.name
                        ));
                    }
                } else {
                    report.problems.push(format!(
                        "group `{}` is missing on stream `{stream}`",
                        config.name
                    ));
                    broken = true;
                }
                group.streams.push(health);
            }
            report.groups.push(group);
        }
        if keys.dlq_is_shared() {
            dlq_keys = std::collections::BTreeSet::from([keys.dlq("")]);
        }
        for key in &dlq_keys {
            report.dlq_entries += backend.len(key).await?;
        }
        self.inner
            .last_dlq_len
            .store(report.dlq_entries, std::sync::atomic::Ordering::Relaxed);
        Ok(broken)
    }
}
