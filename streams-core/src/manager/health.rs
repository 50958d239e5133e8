//! Health: what an operator needs to see.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::PoisonError;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::Manager;
use super::status::{DlqSample, HealthStatus, growth_per_minute};
use crate::backend::{Feature, PendingEntry, PendingQuery, StreamBackend};
use crate::config::ConsumerGroupConfig;
use crate::error::{Result, StreamError};

/// Most pending entries examined per stream when counting claimable ones.
const CLAIMABLE_SCAN: usize = 1000;

/// The state of the backend and of every registered group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// The verdict: unhealthy when the backend cannot be reached or
    /// refuses writes or something is broken, degraded when a threshold of
    /// [`HealthThresholds`](crate::HealthThresholds) is exceeded.
    pub status: HealthStatus,
    /// `status` is not [`HealthStatus::Unhealthy`]: the backend is
    /// reachable and accepts writes, and every group exists on all its
    /// streams (a degraded report is still healthy).
    pub healthy: bool,
    /// `"redis"` or `"memory"`.
    pub backend: String,
    /// The server version, if it answered.
    pub server_version: Option<String>,
    /// Round-trip time of a probe write, in milliseconds, if it answered.
    pub latency_ms: Option<f64>,
    /// Whether the backend accepted the probe write (see
    /// [`readiness`](crate::StreamManager::readiness)).
    pub accepts_writes: bool,
    /// This manager's consumer id.
    pub consumer_id: String,
    /// Every group of the registry and every group this manager knows.
    pub groups: Vec<GroupHealth>,
    /// Entries in the dead-letter stream(s).
    pub dlq_entries: u64,
    /// How fast the dead-letter queue grew since this manager's previous
    /// health check, in entries per minute (0 when it shrank); `None` on
    /// the first check.
    pub dlq_growth_per_minute: Option<f64>,
    /// What looks wrong, in words: what makes the report unhealthy, and
    /// each threshold exceeded.
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
    /// Age of the oldest entry delivered to the group and not yet
    /// acknowledged, on the stream or the group's ready stream, in
    /// milliseconds: the time since it was added there (for a retry copy,
    /// since it fell due), or, when the backend cannot tell, since it was
    /// last delivered. `None` when nothing is pending.
    pub oldest_pending_ms: Option<u64>,
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
    /// Reachability, write acceptance, latency, the state of every group,
    /// and a verdict. See [`StreamManager::health`](crate::StreamManager::health).
    ///
    /// # Errors
    /// [`StreamError::Closed`]; an unreachable backend gives an unhealthy
    /// report instead.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn health(&self) -> Result<HealthReport> {
        self.ensure_open()?;
        let mut report = HealthReport {
            status: HealthStatus::Unhealthy,
            healthy: false,
            backend: self.backend().name().to_owned(),
            server_version: None,
            latency_ms: None,
            accepts_writes: false,
            consumer_id: self.consumer_id().to_owned(),
            groups: Vec::new(),
            dlq_entries: 0,
            dlq_growth_per_minute: None,
            problems: Vec::new(),
        };
        // The probe is the round trip: it also tells a server that answers
        // but refuses writes (out of memory, read-only) from a working one.
        let probe = self.probe().await;
        report.latency_ms = probe.latency_ms;
        report.accepts_writes = probe.accepts_writes;
        let mut broken = !probe.ready;
        report.problems.extend(probe.problem);
        if !probe.reachable {
            return Ok(report);
        }
        match self.initialize().await {
            Ok(()) => report.server_version = self.server_info().map(|s| s.version.clone()),
            Err(e) => {
                report.problems.push(e.to_string());
                return Ok(report);
            }
        }
        match self.collect_health(&mut report).await {
            Ok(found) => broken |= found,
            Err(e) => {
                report.problems.push(format!("health check failed: {e}"));
                return Ok(report);
            }
        }
        let exceeded = self.config().health.exceeded(&report);
        report.status = if broken {
            HealthStatus::Unhealthy
        } else if exceeded.is_empty() {
            HealthStatus::Healthy
        } else {
            HealthStatus::Degraded
        };
        report.healthy = report.status != HealthStatus::Unhealthy;
        report.problems.extend(exceeded);
        Ok(report)
    }

    /// The state of one group on each of its streams: what
    /// [`health`](Self::health) reports for it, without the rest.
    /// See [`StreamManager::group_health`](crate::StreamManager::group_health).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(group = group_name))]
    pub async fn group_health(&self, group_name: &str) -> Result<GroupHealth> {
        self.ready().await?;
        let config = self.group(group_name).await?.config.clone();
        Ok(self.assess_group(&config, &mut Vec::new()).await?.0)
    }

    /// Fills in the groups and the dead-letter queue; returns whether
    /// something is broken (not merely worth a look).
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
        for config in configs.values() {
            let (group, group_broken) = self.assess_group(config, &mut report.problems).await?;
            broken |= group_broken;
            report.groups.push(group);
        }
        let keys = self.keys();
        let dlq_keys: BTreeSet<String> = if keys.dlq_is_shared() {
            BTreeSet::from([keys.dlq("")])
        } else {
            configs
                .values()
                .flat_map(|c| c.streams.iter().map(|s| keys.dlq(s)))
                .collect()
        };
        for key in &dlq_keys {
            report.dlq_entries += self.backend().len(key).await?;
        }
        self.inner
            .last_dlq_len
            .store(report.dlq_entries, std::sync::atomic::Ordering::Relaxed);
        let sample = DlqSample {
            at: Instant::now(),
            len: report.dlq_entries,
        };
        let before = self
            .inner
            .dlq_sample
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(sample);
        report.dlq_growth_per_minute = growth_per_minute(before, sample);
        Ok(broken)
    }

    /// One group's state on each of its streams; what is broken is added to
    /// `problems`, and the flag says whether anything is.
    async fn assess_group(
        &self,
        config: &ConsumerGroupConfig,
        problems: &mut Vec<String>,
    ) -> Result<(GroupHealth, bool)> {
        let mut broken = false;
        let backend = self.backend();
        let keys = self.keys();
        if let Some(error) = self
            .cached_group_state(&config.name)
            .and_then(|g| g.lock_read().promote_error.clone())
        {
            problems.push(format!(
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
            let ready = keys.retry_ready(stream, &config.name);
            let info = backend
                .groups(&key)
                .await?
                .into_iter()
                .find(|g| g.name == config.name);
            let schedule = keys.retry_schedule(stream, &config.name);
            let scheduled_retries = if self.supports(Feature::RetrySchedule) {
                match backend.schedule_len(&schedule).await {
                    Ok(n) => n,
                    Err(e) => {
                        problems.push(format!("retry schedule `{schedule}` is unreadable: {e}"));
                        broken = true;
                        0
                    }
                }
            } else {
                0
            };
            let mut health = StreamHealth {
                stream: stream.clone(),
                length: backend.len(&key).await?,
                group_exists: info.is_some(),
                pending: info.as_ref().map_or(0, |g| g.pending),
                lag: info.as_ref().and_then(|g| g.lag),
                oldest_pending_ms: None,
                claimable: 0,
                scheduled_retries,
                ready_retries: backend.len(&ready).await?,
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
                let mut oldest = None;
                if health.pending > 0 {
                    oldest = self.oldest_pending(&key, &config.name).await?;
                }
                if health.ready_retries > 0 {
                    let retry = self.oldest_pending(&ready, &config.name).await?;
                    oldest = oldest.max(retry);
                }
                health.oldest_pending_ms = oldest.map(millis);
            } else {
                problems.push(format!(
                    "group `{}` is missing on stream `{stream}`",
                    config.name
                ));
                broken = true;
            }
            group.streams.push(health);
        }
        Ok((group, broken))
    }

    /// The age of the first pending entry of `group` on `key` (the oldest:
    /// pending entries are listed in the stream's order), if any.
    async fn oldest_pending(&self, key: &str, group: &str) -> Result<Option<Duration>> {
        let first = match self
            .backend()
            .pending(PendingQuery::new(key, group, 1))
            .await
        {
            Ok(mut page) => page.pop(),
            // A ready stream whose group is gone holds nothing pending.
            Err(StreamError::NoGroup { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(first.map(|entry| self.age_of(&entry)))
    }

    /// Time since a pending entry was added, as its backend tells; else
    /// since it was last delivered.
    fn age_of(&self, entry: &PendingEntry) -> Duration {
        self.backend()
            .entry_time(&entry.id)
            .and_then(|added| SystemTime::now().duration_since(added).ok())
            .unwrap_or(entry.idle)
    }
}
