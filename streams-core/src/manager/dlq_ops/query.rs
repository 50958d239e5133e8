//! What dead-letter operations select, and what listing and counting return.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::message::StreamMessage;

/// Which dead-letter entries to look at: every condition set must hold.
///
/// ```
/// use std::time::Duration;
/// use streams_core::DlqFilter;
///
/// let stale_timeouts = DlqFilter::new()
///     .with_stream("xnai:agent_bus")
///     .with_group("agent_wavefront")
///     .with_reason("timeout")
///     .older_than(Duration::from_secs(3600));
/// assert!(!stale_timeouts.is_empty());
/// assert!(DlqFilter::new().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DlqFilter {
    /// Only entries dead-lettered from this stream (`origin_stream`), or
    /// from one of its partitions (`orders` takes in `orders#3`; a
    /// partition's own name, only that partition).
    pub stream: Option<String>,
    /// Only entries dead-lettered by this group (`group`, exact).
    pub group: Option<String>,
    /// Only entries whose `reason` contains this text (case-sensitive).
    pub reason: Option<String>,
    /// Only entries that failed at or after this time.
    pub since: Option<SystemTime>,
    /// Only entries that failed before this time.
    pub until: Option<SystemTime>,
    /// Only entries that failed longer ago than this, when the operation runs.
    pub older_than: Option<Duration>,
}

impl DlqFilter {
    /// Every entry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only entries dead-lettered from `stream`.
    #[must_use]
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Only entries dead-lettered by `group`.
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Only entries whose reason contains `text`.
    #[must_use]
    pub fn with_reason(mut self, text: impl Into<String>) -> Self {
        self.reason = Some(text.into());
        self
    }

    /// Only entries that failed at or after `time`.
    #[must_use]
    pub fn failed_since(mut self, time: SystemTime) -> Self {
        self.since = Some(time);
        self
    }

    /// Only entries that failed before `time`.
    #[must_use]
    pub fn failed_before(mut self, time: SystemTime) -> Self {
        self.until = Some(time);
        self
    }

    /// Only entries that failed more than `age` before the operation runs.
    #[must_use]
    pub fn older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }

    /// Whether the filter lets every entry through.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Whether `entry`, which failed at `failed` (if known), passes, with
    /// `now` the time the operation started. Conditions on provenance fail
    /// for entries without it, and conditions on time for entries whose
    /// time is unknown.
    pub(crate) fn matches(
        &self,
        entry: &StreamMessage,
        failed: Option<SystemTime>,
        now: SystemTime,
    ) -> bool {
        let dead = entry.dead_letter.as_ref();
        if let Some(stream) = &self.stream {
            // A stream's partitions are the stream (`orders` takes in
            // `orders#3`); a partition's name is that partition alone.
            if dead.is_none_or(|d| {
                &d.origin_stream != stream
                    && crate::partition::split_partition(&d.origin_stream).0 != stream
            }) {
                return false;
            }
        }
        if let Some(group) = &self.group {
            if dead.is_none_or(|d| d.group.as_ref() != Some(group)) {
                return false;
            }
        }
        if let Some(text) = &self.reason {
            if dead.is_none_or(|d| !d.reason.contains(text.as_str())) {
                return false;
            }
        }
        if self.since.is_none() && self.until.is_none() && self.older_than.is_none() {
            return true;
        }
        let Some(failed) = failed else {
            return false;
        };
        if let Some(age) = self.older_than {
            match now.checked_sub(age) {
                Some(cutoff) if failed < cutoff => {}
                // Not old enough; or an age beyond what the clock reaches
                // back to, which nothing is.
                _ => return false,
            }
        }
        self.since.is_none_or(|s| failed >= s) && self.until.is_none_or(|u| failed < u)
    }
}

/// Where a listing of the dead-letter queue goes on: opaque, from
/// [`DlqPage::next`]. Its text can be shown and given back (a command-line
/// `--after`): the last entry id of the page, preceded by its dead-letter
/// stream's key and a space with the per-stream layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DlqCursor(String);

impl DlqCursor {
    /// A cursor from its text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The cursor's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A cursor after entry `id` of the dead-letter stream `key`; the key is
    /// left out when there is only one dead-letter stream.
    pub(crate) fn after(key: &str, id: &str, shared: bool) -> Self {
        if shared {
            Self(id.to_owned())
        } else {
            Self(format!("{key} {id}"))
        }
    }

    /// The key (if the cursor names one) and the id.
    pub(crate) fn parts(&self) -> (Option<&str>, &str) {
        match self.0.split_once(' ') {
            Some((key, id)) => (Some(key), id),
            None => (None, self.0.as_str()),
        }
    }
}

impl fmt::Display for DlqCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A page of the dead-letter queue ([`StreamManager::dlq_list`](crate::StreamManager::dlq_list)).
///
/// ```
/// use streams_core::{DlqCursor, DlqFilter, DlqQuery};
///
/// let first = DlqQuery::new().with_filter(DlqFilter::new().with_reason("timeout")).with_limit(50);
/// let next = first.clone().after(DlqCursor::new("1795645211072-0"));
/// assert_eq!(next.limit, 50);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DlqQuery {
    /// Which entries.
    pub filter: DlqFilter,
    /// Most entries on the page; at least 1. Default 100.
    pub limit: usize,
    /// Where the page starts: after the last entry of the previous page.
    /// `None` (the default): from the oldest entry.
    pub after: Option<DlqCursor>,
}

impl Default for DlqQuery {
    fn default() -> Self {
        Self {
            filter: DlqFilter::default(),
            limit: 100,
            after: None,
        }
    }
}

impl DlqQuery {
    /// The first 100 entries, oldest first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only entries that pass `filter`.
    #[must_use]
    pub fn with_filter(mut self, filter: DlqFilter) -> Self {
        self.filter = filter;
        self
    }

    /// At most `limit` entries.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Starts after `cursor` (the `next` of the previous page).
    #[must_use]
    pub fn after(mut self, cursor: DlqCursor) -> Self {
        self.after = Some(cursor);
        self
    }
}

/// One page of dead letters, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DlqPage {
    /// The entries, decoded: `id` is the dead-letter entry's id and
    /// `dead_letter` its provenance.
    pub entries: Vec<StreamMessage>,
    /// Where the next page starts; `None` when nothing follows. (A page
    /// that ends exactly where the queue does may be followed by an empty
    /// one.)
    pub next: Option<DlqCursor>,
}

/// Dead letters counted ([`StreamManager::dlq_stats`](crate::StreamManager::dlq_stats)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DlqStats {
    /// Entries that passed the filter.
    pub total: u64,
    /// By reason.
    pub by_reason: BTreeMap<String, u64>,
    /// By origin stream.
    pub by_stream: BTreeMap<String, u64>,
    /// By group; entries dead-lettered without one are not in it.
    pub by_group: BTreeMap<String, u64>,
    /// Entries without provenance (written there by something else); they
    /// pass an empty filter only.
    pub without_provenance: u64,
    /// When the oldest counted entry failed (RFC 3339), if any is known.
    pub oldest_failed_at: Option<String>,
    /// When the newest counted entry failed (RFC 3339), if any is known.
    pub newest_failed_at: Option<String>,
}

/// Which dead-letter entries a replay or purge acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DlqSelection {
    /// These entries, by dead-letter id. With the per-stream layout, an id
    /// is looked for in every dead-letter stream (narrowed by
    /// `Ids::stream` when given).
    Ids {
        /// The dead-letter ids.
        ids: Vec<String>,
        /// Only in the dead-letter stream of this origin stream.
        stream: Option<String>,
    },
    /// Every entry that passes the filter (all of them with an empty one).
    Matching(DlqFilter),
}

impl DlqSelection {
    /// The entries with these dead-letter ids.
    pub fn ids<S: Into<String>>(ids: impl IntoIterator<Item = S>) -> Self {
        Self::Ids {
            ids: ids.into_iter().map(Into::into).collect(),
            stream: None,
        }
    }

    /// Narrows the selection to the entries dead-lettered from `stream`
    /// (with the per-stream layout, ids are then looked for in that
    /// stream's dead-letter stream only).
    #[must_use]
    pub fn in_stream(self, stream: impl Into<String>) -> Self {
        match self {
            Self::Ids { ids, .. } => Self::Ids {
                ids,
                stream: Some(stream.into()),
            },
            Self::Matching(filter) => Self::Matching(filter.with_stream(stream)),
        }
    }

    /// Every entry that passes `filter`.
    pub fn matching(filter: DlqFilter) -> Self {
        Self::Matching(filter)
    }

    /// Every entry.
    pub fn all() -> Self {
        Self::Matching(DlqFilter::default())
    }
}
