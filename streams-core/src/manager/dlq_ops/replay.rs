//! Replaying dead letters to the groups that gave up on them.
//!
//! A replayed message goes into its group's ready stream for its origin
//! stream, the private stream retries go to, so no other group reading the
//! stream sees it again. Each entry moves in one atomic step
//! ([`StreamBackend::transfer`]): the copy is added and the dead letter
//! deleted only if it still exists, so a replay run twice, or two replays
//! at once, never replay an entry twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::report::{DlqReplay, ReplayDuplicate, ReplayItem, ReplayReport, ReplaySkip, SkipReason};
use super::{Found, SCAN_PAGE};
use crate::backend::{EntryId, Fields, RangeQuery, StreamBackend, Transfer, TransferOutcome};
use crate::codec::{self, envelope_fields, field, payload_of, push_history};
use crate::config::ConsumerGroupConfig;
use crate::error::{Result, StreamError};
use crate::manager::Manager;
use crate::manager::group::Registered;
use crate::manager::retry::ENVELOPE;
use crate::message::StreamMessage;
use crate::names::validate_name;

/// The provenance fields of a dead letter: a replayed copy does not carry them.
const PROVENANCE: [&str; 7] = [
    field::ORIGIN_STREAM,
    field::ORIGIN_ID,
    field::GROUP,
    field::CONSUMER,
    field::REASON,
    field::FAILED_AT,
    field::DELIVERIES,
];

/// Where an entry goes back to.
#[derive(Debug)]
struct Target {
    group: String,
    stream: String,
    /// The group's ready stream for the stream.
    ready: String,
}

/// An entry with its target.
#[derive(Debug)]
struct Planned {
    found: Found,
    target: Target,
}

impl Planned {
    fn item(&self, new_id: Option<String>) -> ReplayItem {
        let message = &self.found.message;
        ReplayItem {
            dlq_id: message.id.clone(),
            stream: self.target.stream.clone(),
            group: self.target.group.clone(),
            mid: message.mid.clone(),
            replay_count: message.replay_count.saturating_add(1),
            new_id,
        }
    }
}

/// Whether the message a dead letter holds cannot be replayed as it is:
/// the dead-letter entry is malformed, or the original was (its verbatim
/// fields are kept in `raw:` copies).
fn malformed(message: &StreamMessage) -> bool {
    if message.is_malformed() {
        return true;
    }
    let (Some(raw), Some(dead)) = (&message.raw, &message.dead_letter) else {
        return false;
    };
    codec::decode(&dead.origin_stream, &dead.origin_id, raw.fields()).is_malformed()
}

/// The fields of the replayed copy: the envelope as it was, with a fresh
/// retry budget, the replay history, and any fields the producer added
/// beyond the envelope.
fn replay_fields(message: &StreamMessage) -> Fields {
    let mut fields = envelope_fields(
        payload_of(message),
        &message.timestamp,
        0,
        message.mid.as_deref(),
        message.error.as_deref(),
        message.traceparent.as_deref(),
    );
    push_history(
        &mut fields,
        Some(&message.id),
        message.replay_count.saturating_add(1),
    );
    if let Some(raw) = &message.raw {
        let own = |k: &[u8]| {
            ENVELOPE
                .iter()
                .chain(PROVENANCE.iter())
                .any(|f| k == f.as_bytes())
                || k.starts_with(field::RAW_PREFIX.as_bytes())
        };
        fields.extend(raw.fields().iter().filter(|(k, _)| !own(k)).cloned());
    }
    fields
}

impl<B: StreamBackend> Manager<B> {
    /// Replays dead letters to their groups.
    /// See [`StreamManager::dlq_replay`](crate::StreamManager::dlq_replay).
    ///
    /// # Errors
    /// [`StreamError::Config`] for a rate limit of 0,
    /// [`StreamError::InvalidName`] for a bad target group,
    /// [`StreamError::InvalidId`], connection errors (entries replayed
    /// before the error stay replayed; the others stay in the queue).
    pub async fn dlq_replay(&self, request: &DlqReplay) -> Result<ReplayReport> {
        if request.rate_limit == Some(0) {
            return Err(StreamError::config(
                "a replay rate limit is at least 1 entry per second",
            ));
        }
        if let Some(group) = &request.target_group {
            validate_name("group", group)?;
        }
        self.ready().await?;
        let (found, not_found) = self.dlq_select(&request.selection).await?;
        let mut report = ReplayReport {
            dry_run: request.dry_run,
            ..ReplayReport::default()
        };
        report
            .skipped
            .extend(not_found.into_iter().map(|dlq_id| ReplaySkip {
                dlq_id,
                reason: SkipReason::NotFound,
            }));

        let mut configs: HashMap<String, Option<ConsumerGroupConfig>> = HashMap::new();
        let mut planned = Vec::with_capacity(found.len());
        for found in found {
            match self
                .replay_target(
                    &found.message,
                    request.target_group.as_deref(),
                    &mut configs,
                )
                .await?
            {
                Ok(target) => planned.push(Planned { found, target }),
                Err(reason) => report.skipped.push(ReplaySkip {
                    dlq_id: found.message.id.clone(),
                    reason,
                }),
            }
        }

        let to_do = self.drop_duplicates(planned, &mut report).await?;
        if request.dry_run {
            report.would_replay = to_do.iter().map(|p| p.item(None)).collect();
            return Ok(report);
        }
        let total = to_do.len() as u64;
        let interval = request
            .rate_limit
            .map(|n| Duration::from_secs(1) / n.max(1));
        let mut next = Instant::now();
        for (done, p) in to_do.iter().enumerate() {
            if let Some(interval) = interval {
                tokio::time::sleep_until(next.into()).await;
                next = Instant::now().max(next) + interval;
            }
            let transfer = Transfer::new(
                p.found.key.clone(),
                EntryId::from(p.found.message.id.as_str()),
                p.target.ready.clone(),
                replay_fields(&p.found.message),
            );
            match self.backend().transfer(transfer).await? {
                TransferOutcome::Transferred { new_id } => {
                    report.replayed.push(p.item(Some(new_id.into_string())));
                }
                TransferOutcome::Missing => report.skipped.push(ReplaySkip {
                    dlq_id: p.found.message.id.clone(),
                    reason: SkipReason::Gone,
                }),
            }
            if let Some(progress) = &request.progress {
                progress(done as u64 + 1, total);
            }
        }
        Ok(report)
    }

    /// Where a dead letter goes back to, or why it cannot. Groups are read
    /// from the registry (once per call, in `configs`): a replay needs a
    /// group that exists now.
    async fn replay_target(
        &self,
        message: &StreamMessage,
        target_group: Option<&str>,
        configs: &mut HashMap<String, Option<ConsumerGroupConfig>>,
    ) -> Result<std::result::Result<Target, SkipReason>> {
        let Some(dead) = &message.dead_letter else {
            return Ok(Err(SkipReason::NoProvenance));
        };
        if malformed(message) {
            return Ok(Err(SkipReason::Malformed));
        }
        let Some(group) = dead.group.as_deref().or(target_group) else {
            return Ok(Err(SkipReason::NoGroup));
        };
        if !configs.contains_key(group) {
            let config = if validate_name("group", group).is_ok() {
                match self.registered(group).await {
                    Ok(Some(Registered::Group(config))) => Some(config),
                    // Deleted, never registered, or unreadable: not a group to replay to.
                    Ok(_) | Err(StreamError::Decode { .. }) => None,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            configs.insert(group.to_owned(), config);
        }
        let Some(config) = configs.get(group).and_then(Option::as_ref) else {
            return Ok(Err(SkipReason::GroupNotFound {
                group: group.to_owned(),
            }));
        };
        if !config.streams.contains(&dead.origin_stream) {
            return Ok(Err(SkipReason::StreamNotInGroup {
                group: group.to_owned(),
                stream: dead.origin_stream.clone(),
            }));
        }
        Ok(Ok(Target {
            group: group.to_owned(),
            stream: dead.origin_stream.clone(),
            ready: self.keys().retry_ready(&dead.origin_stream, group),
        }))
    }

    /// Leaves out, as duplicates, entries whose message goes to the same
    /// ready stream as a newer entry of this call, or as a copy already
    /// waiting there; returns the rest, in order.
    async fn drop_duplicates(
        &self,
        planned: Vec<Planned>,
        report: &mut ReplayReport,
    ) -> Result<Vec<Planned>> {
        // The newest entry per (mid, ready stream): latest failure, then
        // latest in the queue's order.
        let mut newest: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, p) in planned.iter().enumerate() {
            if let Some(mid) = &p.found.message.mid {
                let slot = newest
                    .entry((mid.as_str(), p.target.ready.as_str()))
                    .or_insert(i);
                if (p.found.failed, i) >= (planned[*slot].found.failed, *slot) {
                    *slot = i;
                }
            }
        }
        let mut waiting: HashMap<&str, HashMap<String, String>> = HashMap::new();
        for p in &planned {
            let ready = p.target.ready.as_str();
            if p.found.message.mid.is_some() && !waiting.contains_key(ready) {
                waiting.insert(ready, self.waiting_mids(ready).await?);
            }
        }
        let mut keep = vec![true; planned.len()];
        for (i, p) in planned.iter().enumerate() {
            let Some(mid) = &p.found.message.mid else {
                continue;
            };
            let ready = p.target.ready.as_str();
            let (of, is_waiting) = match newest.get(&(mid.as_str(), ready)) {
                Some(&w) if w != i => (planned[w].found.message.id.clone(), false),
                _ => match waiting.get(ready).and_then(|m| m.get(mid)) {
                    Some(copy) => (copy.clone(), true),
                    None => continue,
                },
            };
            keep[i] = false;
            report.duplicates.push(ReplayDuplicate {
                dlq_id: p.found.message.id.clone(),
                mid: mid.clone(),
                stream: p.target.stream.clone(),
                group: p.target.group.clone(),
                of,
                waiting: is_waiting,
            });
        }
        Ok(planned
            .into_iter()
            .zip(keep)
            .filter_map(|(p, keep)| keep.then_some(p))
            .collect())
    }

    /// The `mid`s of the entries in a ready stream, with their ids.
    async fn waiting_mids(&self, ready: &str) -> Result<HashMap<String, String>> {
        let mut mids = HashMap::new();
        let mut start = std::ops::Bound::Unbounded;
        loop {
            let query = RangeQuery::new(ready, SCAN_PAGE).within(start, std::ops::Bound::Unbounded);
            let page = self.backend().range(query).await?;
            for entry in &page {
                let mid = entry
                    .fields
                    .iter()
                    .find(|(k, _)| k.as_ref() == field::MID.as_bytes())
                    .and_then(|(_, v)| std::str::from_utf8(v).ok());
                if let Some(mid) = mid {
                    mids.insert(mid.to_owned(), entry.id.as_str().to_owned());
                }
            }
            match page.last() {
                Some(last) if page.len() == SCAN_PAGE => {
                    start = std::ops::Bound::Excluded(last.id.clone());
                }
                _ => return Ok(mids),
            }
        }
    }
}
