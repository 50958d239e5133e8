//! Looking without touching: the streams there are, a group's pending
//! entries, entries read without a group, and what a group has done with
//! them. Nothing here delivers, claims or acknowledges anything.

use std::collections::HashMap;
use std::ops::Bound;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Manager;
use crate::backend::{EntryId, PendingEntry, PendingQuery, RangeQuery, StreamBackend};
use crate::error::{Result, StreamError};
use crate::message::StreamMessage;
use crate::names::StreamUse;

/// A stream as the server holds it ([`StreamManager::list_streams`](crate::StreamManager::list_streams)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamInfo {
    /// The stream name.
    pub name: String,
    /// Entries in it.
    pub length: u64,
    /// The consumer groups on it, as the server lists them.
    pub groups: Vec<String>,
}

/// Which pending entries of a group to list
/// ([`StreamManager::list_pending`](crate::StreamManager::list_pending)).
///
/// ```
/// use std::time::Duration;
/// use streams_core::PendingFilter;
///
/// let stuck = PendingFilter::new("agent_wavefront")
///     .with_consumer("cline-1")
///     .idle_at_least(Duration::from_secs(300));
/// assert_eq!(stuck.limit, 100);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingFilter {
    /// The group.
    pub group: String,
    /// Only this consumer's entries.
    pub consumer: Option<String>,
    /// Only entries of this stream (and its retries).
    pub stream: Option<String>,
    /// Only entries idle at least this long.
    pub min_idle: Option<Duration>,
    /// Most entries listed; at least 1. Default 100.
    pub limit: usize,
}

impl PendingFilter {
    /// The first 100 pending entries of `group`.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            consumer: None,
            stream: None,
            min_idle: None,
            limit: 100,
        }
    }

    /// Only `consumer`'s entries.
    #[must_use]
    pub fn with_consumer(mut self, consumer: impl Into<String>) -> Self {
        self.consumer = Some(consumer.into());
        self
    }

    /// Only entries of `stream`.
    #[must_use]
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Only entries idle at least `idle`.
    #[must_use]
    pub fn idle_at_least(mut self, idle: Duration) -> Self {
        self.min_idle = Some(idle);
        self
    }

    /// At most `limit` entries.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// One entry delivered to a group and not yet settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingInfo {
    /// The stream it belongs to (its logical name, also for retries).
    pub stream: String,
    /// The entry id (on the group's ready stream, for a retry).
    pub id: String,
    /// The consumer holding it.
    pub consumer: String,
    /// Milliseconds since it was last delivered or its lease renewed.
    pub idle_ms: u64,
    /// Times delivered.
    pub deliveries: u64,
    /// Whether it is a retry (or replay) waiting on the group's ready stream.
    pub retry: bool,
}

/// Entries of a stream read without any group
/// ([`StreamManager::peek_messages`](crate::StreamManager::peek_messages)).
///
/// ```
/// use streams_core::PeekQuery;
///
/// let last_ten = PeekQuery::new("xnai:agent_bus").with_count(10).newest_first();
/// let after = PeekQuery::new("xnai:agent_bus").after("1795645134783-0");
/// assert!(last_ten.newest_first && !after.newest_first);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeekQuery {
    /// The stream.
    pub stream: String,
    /// Only entries after this id.
    pub after: Option<String>,
    /// Most entries returned; at least 1. Default 100.
    pub count: usize,
    /// The newest first (the last `count` entries). Default: oldest first.
    pub newest_first: bool,
}

impl PeekQuery {
    /// The first 100 entries of `stream`.
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            after: None,
            count: 100,
            newest_first: false,
        }
    }

    /// Only entries after entry `id`.
    #[must_use]
    pub fn after(mut self, id: impl Into<String>) -> Self {
        self.after = Some(id.into());
        self
    }

    /// At most `count` entries.
    #[must_use]
    pub fn with_count(mut self, count: usize) -> Self {
        self.count = count;
        self
    }

    /// The newest entries first.
    #[must_use]
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }
}

/// What a group has done with one entry of a stream
/// ([`StreamManager::group_view`](crate::StreamManager::group_view)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntryState {
    /// Not yet delivered to the group.
    New,
    /// Delivered and not yet settled.
    Pending {
        /// The consumer holding it.
        consumer: String,
        /// Times delivered.
        deliveries: u64,
        /// Milliseconds since it was last delivered or its lease renewed.
        idle_ms: u64,
    },
    /// The group has gone past it: delivered and settled (acknowledged,
    /// retried or dead-lettered), or older than where the group started.
    Done,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<B: StreamBackend> Manager<B> {
    /// The streams under this manager's namespace.
    /// See [`StreamManager::list_streams`](crate::StreamManager::list_streams).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        self.ready().await?;
        let keys = self.keys();
        let mut out = Vec::new();
        for key in self.backend().stream_keys(keys.namespace_prefix()).await? {
            // Retry, ready and per-stream dead-letter keys have no stream name.
            let Some(name) = keys.logical(&key) else {
                continue;
            };
            if keys.is_internal(name) {
                continue;
            }
            let groups = self.backend().groups(&key).await?;
            out.push(StreamInfo {
                name: name.to_owned(),
                length: self.backend().len(&key).await?,
                groups: groups.into_iter().map(|g| g.name).collect(),
            });
        }
        Ok(out)
    }

    /// A group's pending entries.
    /// See [`StreamManager::list_pending`](crate::StreamManager::list_pending).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::Config`] for a limit
    /// of 0 or a stream the group does not read, connection errors.
    pub async fn list_pending(&self, filter: &PendingFilter) -> Result<Vec<PendingInfo>> {
        if filter.limit == 0 {
            return Err(StreamError::config(
                "a pending listing holds at least 1 entry",
            ));
        }
        self.ready().await?;
        let group = self.group(&filter.group).await?;
        if let Some(stream) = &filter.stream {
            if !group.sources.iter().any(|s| &s.logical == stream) {
                return Err(StreamError::config(format!(
                    "group `{}` does not read stream `{stream}`",
                    filter.group
                )));
            }
        }
        let mut out = Vec::new();
        for (source, retry) in group
            .sources
            .iter()
            .map(|s| (s, false))
            .chain(group.sources.iter().map(|s| (s, true)))
        {
            if filter.stream.as_ref().is_some_and(|s| s != &source.logical) {
                continue;
            }
            let key = if retry {
                &source.retry.ready
            } else {
                &source.key
            };
            let mut query = PendingQuery::new(key, &filter.group, filter.limit - out.len());
            if let Some(consumer) = &filter.consumer {
                query = query.of_consumer(consumer);
            }
            if let Some(idle) = filter.min_idle {
                query = query.idle_at_least(idle);
            }
            let entries = match self.backend().pending(query).await {
                Ok(entries) => entries,
                // Missing there (a ready stream never written): nothing pending.
                Err(StreamError::NoGroup { .. }) => continue,
                Err(e) => return Err(e),
            };
            out.extend(entries.into_iter().map(|p| PendingInfo {
                stream: source.logical.clone(),
                id: p.id.into_string(),
                consumer: p.consumer,
                idle_ms: millis(p.idle),
                deliveries: p.deliveries,
                retry,
            }));
            if out.len() >= filter.limit {
                break;
            }
        }
        Ok(out)
    }

    /// Entries of a stream, read without any group.
    /// See [`StreamManager::peek_messages`](crate::StreamManager::peek_messages).
    ///
    /// # Errors
    /// [`StreamError::InvalidName`], [`StreamError::InvalidId`],
    /// [`StreamError::Config`] for a count of 0, connection errors.
    pub async fn peek_messages(&self, query: &PeekQuery) -> Result<Vec<StreamMessage>> {
        self.keys().check_stream(&query.stream, StreamUse::Read)?;
        if query.count == 0 {
            return Err(StreamError::config("a peek reads at least 1 entry"));
        }
        self.ready().await?;
        let key = self.keys().stream(&query.stream);
        let start = match &query.after {
            Some(id) => Bound::Excluded(EntryId::from(id.as_str())),
            None => Bound::Unbounded,
        };
        let mut range = RangeQuery::new(&key, query.count).within(start, Bound::Unbounded);
        if query.newest_first {
            range = range.newest_first();
        }
        let entries = self.backend().range(range).await?;
        Ok(entries
            .iter()
            .map(|e| self.decode_entry(&query.stream, e))
            .collect())
    }

    /// What a group has done with entries of one of its streams.
    /// See [`StreamManager::group_view`](crate::StreamManager::group_view).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::Config`] for a stream
    /// the group does not read, [`StreamError::NoGroup`] when the group is
    /// missing on the stream, [`StreamError::InvalidId`], connection errors.
    pub async fn group_view(
        &self,
        group_name: &str,
        stream: &str,
        ids: &[String],
    ) -> Result<Vec<EntryState>> {
        self.ready().await?;
        let group = self.group(group_name).await?;
        let Some(source) = group.sources.iter().find(|s| s.logical == stream) else {
            return Err(StreamError::config(format!(
                "group `{group_name}` does not read stream `{stream}`"
            )));
        };
        let key = source.key.as_str();
        let info = self
            .backend()
            .groups(key)
            .await?
            .into_iter()
            .find(|g| g.name == group_name)
            .ok_or_else(|| StreamError::NoGroup {
                stream: key.to_owned(),
                group: group_name.to_owned(),
            })?;
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
            return Ok(Vec::new());
        };
        let within = PendingQuery::new(key, group_name, ids.len().saturating_add(1000)).within(
            Bound::Included(EntryId::from(first.as_str())),
            Bound::Included(EntryId::from(last.as_str())),
        );
        let pending: HashMap<String, PendingEntry> = self
            .backend()
            .pending(within)
            .await?
            .into_iter()
            .map(|p| (p.id.as_str().to_owned(), p))
            .collect();
        // Entries after the group's last delivered one are new; they are a
        // suffix of ids in the stream's order, found by bisection.
        let first_new = match &info.last_delivered {
            None => 0,
            Some(last_delivered) => {
                let (mut lo, mut hi) = (0, ids.len());
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    let after = RangeQuery::new(key, 1).within(
                        Bound::Excluded(last_delivered.clone()),
                        Bound::Included(EntryId::from(ids[mid].as_str())),
                    );
                    if self.backend().range(after).await?.is_empty() {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
        };
        Ok(ids
            .iter()
            .enumerate()
            .map(|(i, id)| match pending.get(id) {
                Some(p) => EntryState::Pending {
                    consumer: p.consumer.clone(),
                    deliveries: p.deliveries,
                    idle_ms: millis(p.idle),
                },
                None if i >= first_new => EntryState::New,
                None => EntryState::Done,
            })
            .collect())
    }
}
