//! Upkeep: promoting due retries on demand, pruning stale consumers,
//! trimming streams.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Manager;
use super::read::PROMOTE_LIMIT;
use crate::backend::{ConsumerRef, ConsumerRemoval, Feature, StreamBackend, Trim};
use crate::error::{Result, StreamError};
use crate::names::StreamUse;
use crate::observe::{Count, Labels};

/// What [`prune_consumers`](crate::StreamManager::prune_consumers) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Consumers removed from the group, by name, sorted.
    pub removed: Vec<String>,
    /// Idle consumers kept because they hold pending entries, with how many
    /// (over all the group's streams and retries): their work must be
    /// claimed first.
    pub kept: Vec<(String, u64)>,
}

impl<B: StreamBackend> Manager<B> {
    /// Moves due retries into the ready streams now.
    /// See [`StreamManager::promote_due_retries`](crate::StreamManager::promote_due_retries).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(group = group_name))]
    pub async fn promote_due_retries(&self, group_name: Option<&str>) -> Result<u64> {
        self.ready().await?;
        self.require(Feature::RetrySchedule, "promote_due_retries")?;
        let names = match group_name {
            Some(name) => vec![name.to_owned()],
            None => self
                .registered_groups()
                .await?
                .into_iter()
                .map(|c| c.name)
                .collect(),
        };
        let mut total = 0;
        for name in names {
            let group = self.group(&name).await?;
            // A full page may leave more due entries behind: go on until none is.
            loop {
                let round = self.promote_group(&group).await?;
                total += round.promoted;
                let failed = round.error.is_some();
                self.report_promotion(&group, round.error);
                if failed || round.most_from_one < PROMOTE_LIMIT as u64 {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Removes idle consumers that hold nothing.
    /// See [`StreamManager::prune_consumers`](crate::StreamManager::prune_consumers).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::Unsupported`], connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(group = group_name))]
    pub async fn prune_consumers(&self, group_name: &str, idle: Duration) -> Result<PruneReport> {
        self.ready().await?;
        self.require(Feature::ConsumerListing, "prune_consumers")?;
        let group = self.group(group_name).await?;
        // A consumer exists per key (each stream and each retry stream);
        // it is stale when it is idle on every key it is on.
        let mut seen: BTreeMap<String, (Duration, Vec<&str>)> = BTreeMap::new();
        for key in group.all_keys() {
            let consumers = match self.backend().consumers(key, group_name).await {
                Ok(c) => c,
                // A group missing on one of its keys has no consumers there.
                Err(StreamError::NoGroup { .. }) => continue,
                Err(e) => return Err(e),
            };
            for c in consumers {
                let slot = seen.entry(c.name).or_insert((Duration::MAX, Vec::new()));
                slot.0 = slot.0.min(c.idle);
                slot.1.push(key);
            }
        }
        let mut report = PruneReport::default();
        for (name, (least_idle, keys)) in seen {
            if least_idle < idle || name == group.consumer {
                continue;
            }
            let mut pending = 0;
            for key in keys {
                let consumer = ConsumerRef::new(key, group_name, &name);
                if let ConsumerRemoval::HasPending(n) =
                    self.backend().delete_consumer(consumer).await?
                {
                    pending += n;
                }
            }
            if pending > 0 {
                report.kept.push((name, pending));
            } else {
                report.removed.push(name);
            }
        }
        self.count(
            Count::ConsumersPruned,
            Labels::group(group_name),
            report.removed.len() as u64,
        );
        Ok(report)
    }

    /// Trims a stream to its newest `max_len` entries, exactly.
    /// See [`StreamManager::trim_stream`](crate::StreamManager::trim_stream).
    ///
    /// # Errors
    /// [`StreamError::InvalidName`], [`StreamError::Config`], connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(stream = stream.as_ref(), max_len))]
    pub async fn trim_stream(&self, stream: impl AsRef<str>, max_len: u64) -> Result<u64> {
        let stream = stream.as_ref();
        self.keys().check_stream(stream, StreamUse::Read)?;
        if max_len == 0 {
            return Err(StreamError::config("max_len must be at least 1"));
        }
        self.ready().await?;
        self.backend()
            .trim(
                &self.keys().stream(stream),
                Trim::MaxLen {
                    len: max_len,
                    approx: false,
                },
            )
            .await
    }
}
