//! Operating the dead-letter queue: list with filters and paging, show one
//! entry, count by reason, replay to the original group, purge.
//!
//! Every operation reads the dead-letter streams in order, a page of
//! entries per round trip, and filters in the manager: the queue is
//! bounded (`DlqConfig::max_len`), and entry ids are opaque here.

mod query;
mod replay;
mod report;

use std::collections::{BTreeSet, HashSet};
use std::ops::Bound;
use std::time::SystemTime;

pub use query::{DlqCursor, DlqFilter, DlqPage, DlqQuery, DlqSelection, DlqStats};
pub use report::{
    DlqProgress, DlqPurge, DlqReplay, PurgeReport, PurgedEntry, ReplayDuplicate, ReplayItem,
    ReplayReport, ReplaySkip, SkipReason,
};

use super::Manager;
use crate::backend::{Entry, EntryId, RangeQuery, StreamBackend};
use crate::error::{Result, StreamError};
use crate::message::StreamMessage;
use crate::names::validate_name;

/// Entries read per round trip while scanning a dead-letter stream.
const SCAN_PAGE: usize = 500;

/// Ids deleted per round trip by a purge.
const DELETE_BATCH: usize = 500;

/// A dead-letter entry found by a scan.
#[derive(Debug)]
pub(crate) struct Found {
    /// The dead-letter stream's key.
    pub(crate) key: String,
    /// The entry, decoded.
    pub(crate) message: StreamMessage,
    /// When it failed: its `failed_at`, else its entry time.
    pub(crate) failed: Option<SystemTime>,
}

impl Found {
    fn purged(&self) -> PurgedEntry {
        let dead = self.message.dead_letter.as_ref();
        PurgedEntry {
            dlq_id: self.message.id.clone(),
            stream: dead.map(|d| d.origin_stream.clone()),
            group: dead.and_then(|d| d.group.clone()),
            reason: dead.map(|d| d.reason.clone()),
        }
    }
}

/// When a dead letter failed, by its `failed_at`.
fn failed_at(message: &StreamMessage) -> Option<SystemTime> {
    let dead = message.dead_letter.as_ref()?;
    humantime::parse_rfc3339(&dead.failed_at).ok()
}

impl<B: StreamBackend> Manager<B> {
    /// The dead-letter keys an operation looks at, sorted: the shared one;
    /// with the per-stream layout, that of `stream` when given, else every
    /// one found by prefix or named by a known group's streams.
    async fn dlq_keys_for(&self, stream: Option<&str>) -> Result<Vec<String>> {
        let keys = self.keys();
        if keys.dlq_is_shared() {
            return Ok(vec![keys.dlq("")]);
        }
        if let Some(stream) = stream {
            validate_name("stream", stream)?;
            let partitions = match crate::partition::split_partition(stream) {
                (_, 0) => self.read_count(stream).await?.unwrap_or(1),
                _ => 1,
            };
            return Ok((0..partitions)
                .map(|p| keys.dlq(&crate::partition::partition_stream(stream, p)))
                .collect());
        }
        let mut all: BTreeSet<String> = self.dlq_keys().await?;
        all.extend(self.backend().stream_keys(&keys.dlq_key_prefix()).await?);
        Ok(all.into_iter().collect())
    }

    /// The name a dead-letter stream is shown by: its stream name, or its
    /// key without the namespace (per-stream streams have no stream name).
    pub(crate) fn dlq_name(&self, key: &str) -> String {
        let keys = self.keys();
        keys.logical(key)
            .unwrap_or_else(|| keys.unnamespaced(key))
            .to_owned()
    }

    fn found(&self, key: &str, entry: &Entry) -> Found {
        let message = self.decode_entry(&self.dlq_name(key), entry);
        let failed = failed_at(&message).or_else(|| self.backend().entry_time(&entry.id));
        Found {
            key: key.to_owned(),
            message,
            failed,
        }
    }

    /// Reads the dead-letter streams in order, from `after`, keeping the
    /// entries that pass `filter`, at most `limit`; returns them and, when
    /// more may follow, the cursor after the last one.
    pub(crate) async fn dlq_scan(
        &self,
        filter: &DlqFilter,
        after: Option<&DlqCursor>,
        limit: usize,
    ) -> Result<(Vec<Found>, Option<DlqCursor>)> {
        let now = SystemTime::now();
        let keys = self.dlq_keys_for(filter.stream.as_deref()).await?;
        let shared = self.keys().dlq_is_shared();
        let after = after.map(|c| {
            let (key, id) = c.parts();
            let key = key.map_or_else(|| keys.first().cloned().unwrap_or_default(), str::to_owned);
            (key, EntryId::from(id))
        });
        let mut out = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            let mut start = match &after {
                Some((from, id)) if from == key => Bound::Excluded(id.clone()),
                Some((from, _)) if key < from => continue,
                _ => Bound::Unbounded,
            };
            loop {
                let query = RangeQuery::new(key, SCAN_PAGE).within(start, Bound::Unbounded);
                let page = self.backend().range(query).await?;
                let full = page.len() == SCAN_PAGE;
                for (i, entry) in page.iter().enumerate() {
                    let found = self.found(key, entry);
                    if !filter.matches(&found.message, found.failed, now) {
                        continue;
                    }
                    out.push(found);
                    if out.len() >= limit {
                        let more = i + 1 < page.len() || full || k + 1 < keys.len();
                        let next = more.then(|| DlqCursor::after(key, entry.id.as_str(), shared));
                        return Ok((out, next));
                    }
                }
                match page.last() {
                    Some(last) if full => start = Bound::Excluded(last.id.clone()),
                    _ => break,
                }
            }
        }
        Ok((out, None))
    }

    /// The entries a selection names, in dead-letter order, and the ids
    /// asked for that no entry has.
    pub(crate) async fn dlq_select(
        &self,
        selection: &DlqSelection,
    ) -> Result<(Vec<Found>, Vec<String>)> {
        match selection {
            DlqSelection::Matching(filter) => {
                let (found, _) = self.dlq_scan(filter, None, usize::MAX).await?;
                Ok((found, Vec::new()))
            }
            DlqSelection::Ids { ids, stream } => {
                let keys = self.dlq_keys_for(stream.as_deref()).await?;
                let mut found = Vec::new();
                let mut missing = Vec::new();
                let mut seen = BTreeSet::new();
                for id in ids.iter().filter(|id| seen.insert(id.as_str())) {
                    let before = found.len();
                    for key in &keys {
                        if let Some(entry) = self.dlq_entry(key, id).await? {
                            found.push(self.found(key, &entry));
                        }
                    }
                    if found.len() == before {
                        missing.push(id.clone());
                    }
                }
                Ok((found, missing))
            }
        }
    }

    /// The entry `id` of the dead-letter stream `key`, if there is one.
    async fn dlq_entry(&self, key: &str, id: &str) -> Result<Option<Entry>> {
        let exact = EntryId::from(id);
        let query =
            RangeQuery::new(key, 1).within(Bound::Included(exact.clone()), Bound::Included(exact));
        let mut got = self.backend().range(query).await?;
        // An id the backend reads as a range (a bare `<ms>`) finds another entry.
        Ok(got.pop().filter(|e| e.id.as_str() == id))
    }

    /// A page of the dead-letter queue.
    /// See [`StreamManager::dlq_list`](crate::StreamManager::dlq_list).
    ///
    /// # Errors
    /// [`StreamError::Config`] for a limit of 0, [`StreamError::InvalidId`]
    /// for a cursor the backend cannot read, [`StreamError::InvalidName`],
    /// connection errors.
    pub async fn dlq_list(&self, query: &DlqQuery) -> Result<DlqPage> {
        if query.limit == 0 {
            return Err(StreamError::config(
                "a dead-letter page holds at least 1 entry",
            ));
        }
        self.ready().await?;
        let (found, next) = self
            .dlq_scan(&query.filter, query.after.as_ref(), query.limit)
            .await?;
        Ok(DlqPage {
            entries: found.into_iter().map(|f| f.message).collect(),
            next,
        })
    }

    /// One dead-letter entry by id.
    /// See [`StreamManager::dlq_show`](crate::StreamManager::dlq_show).
    ///
    /// # Errors
    /// [`StreamError::InvalidId`], [`StreamError::InvalidName`], connection errors.
    pub async fn dlq_show(&self, id: &str, stream: Option<&str>) -> Result<Option<StreamMessage>> {
        self.ready().await?;
        for key in self.dlq_keys_for(stream).await? {
            if let Some(entry) = self.dlq_entry(&key, id).await? {
                return Ok(Some(self.found(&key, &entry).message));
            }
        }
        Ok(None)
    }

    /// Dead letters counted by reason, stream and group.
    /// See [`StreamManager::dlq_stats`](crate::StreamManager::dlq_stats).
    ///
    /// # Errors
    /// [`StreamError::InvalidName`], connection errors.
    pub async fn dlq_stats(&self, filter: &DlqFilter) -> Result<DlqStats> {
        self.ready().await?;
        let (found, _) = self.dlq_scan(filter, None, usize::MAX).await?;
        let mut stats = DlqStats::default();
        let (mut oldest, mut newest): (Option<SystemTime>, Option<SystemTime>) = (None, None);
        for f in &found {
            stats.total += 1;
            match &f.message.dead_letter {
                Some(d) => {
                    *stats.by_reason.entry(d.reason.clone()).or_default() += 1;
                    *stats.by_stream.entry(d.origin_stream.clone()).or_default() += 1;
                    if let Some(group) = &d.group {
                        *stats.by_group.entry(group.clone()).or_default() += 1;
                    }
                }
                None => stats.without_provenance += 1,
            }
            if let Some(t) = f.failed {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
                newest = Some(newest.map_or(t, |n| n.max(t)));
            }
        }
        stats.oldest_failed_at = oldest.map(crate::codec::rfc3339);
        stats.newest_failed_at = newest.map(crate::codec::rfc3339);
        Ok(stats)
    }

    /// Removes dead letters.
    /// See [`StreamManager::dlq_purge`](crate::StreamManager::dlq_purge).
    ///
    /// # Errors
    /// [`StreamError::InvalidId`], [`StreamError::InvalidName`], connection
    /// errors (some entries may have been removed).
    pub async fn dlq_purge(&self, request: &DlqPurge) -> Result<PurgeReport> {
        self.ready().await?;
        let (found, not_found) = self.dlq_select(&request.selection).await?;
        let mut report = PurgeReport {
            dry_run: request.dry_run,
            not_found,
            ..PurgeReport::default()
        };
        if request.dry_run {
            report.would_remove = found.iter().map(Found::purged).collect();
            return Ok(report);
        }
        let total = found.len() as u64;
        let mut done = 0;
        let mut rest = found.as_slice();
        while !rest.is_empty() {
            // One key per batch: the entries of a key come together.
            let key = &rest[0].key;
            let n = rest
                .iter()
                .take(DELETE_BATCH)
                .take_while(|f| &f.key == key)
                .count();
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            let ids: Vec<EntryId> = batch
                .iter()
                .map(|f| EntryId::from(f.message.id.as_str()))
                .collect();
            let deleted: HashSet<EntryId> = self
                .backend()
                .delete_entries(key, &ids)
                .await?
                .into_iter()
                .collect();
            for f in batch {
                if deleted.contains(f.message.id.as_str()) {
                    report.removed.push(f.purged());
                } else {
                    report.not_found.push(f.message.id.clone());
                }
            }
            done += n as u64;
            if let Some(progress) = &request.progress {
                progress(done, total);
            }
        }
        Ok(report)
    }
}
