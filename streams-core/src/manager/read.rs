//! Reading: `read_messages`, with the restart backlog and promotion of due retries.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::group::{Backlog, Held};
use super::{Group, Manager, until};
use crate::backend::{
    Ack, Entry, EntryId, Feature, KeyEntries, Lease, PendingQuery, ReadGroup, StreamBackend,
};
use crate::codec;
use crate::error::{Result, StreamError};
use crate::message::{Delivery, MessageStatus, StreamMessage};
use crate::observe::{Count, Labels};

/// The longest one backend read blocks; a longer block is several reads.
const MAX_BLOCK_SLICE: Duration = Duration::from_secs(3600);

/// Most due retries moved per schedule in one promotion.
pub(crate) const PROMOTE_LIMIT: usize = 1000;

/// What one promotion of a group's schedules did.
#[derive(Debug)]
pub(crate) struct PromoteRound {
    /// Entries moved, over all schedules.
    pub(crate) promoted: u64,
    /// The most moved from one schedule ([`PROMOTE_LIMIT`] means more may be due).
    pub(crate) most_from_one: u64,
    /// Time until the next retry falls due.
    pub(crate) next_due_in: Option<Duration>,
    /// What failed, if anything did.
    pub(crate) error: Option<String>,
}

impl<B: StreamBackend> Manager<B> {
    /// Reads the next messages of a group for this consumer.
    /// See [`StreamManager::read_messages`](crate::StreamManager::read_messages).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::InvalidName`], connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(group = group_name))]
    pub async fn read_messages(
        &self,
        group_name: &str,
        count: Option<usize>,
        block: Option<Duration>,
    ) -> Result<Vec<StreamMessage>> {
        self.ready().await?;
        let group = self.group(group_name).await?;
        let count = count.unwrap_or(group.config.batch_size);
        if count == 0 {
            return Err(StreamError::config("read count must be at least 1"));
        }
        // `None`: a block too long to represent, which never ends.
        let deadline = Instant::now().checked_add(block.unwrap_or(group.config.block));

        if let Some(messages) = self.read_backlog(&group).await? {
            return Ok(messages);
        }

        loop {
            // Wake up for the next known retry rather than sleeping past it,
            // and at least every `MAX_BLOCK_SLICE`.
            let mut wait = deadline.map_or(MAX_BLOCK_SLICE, until).min(MAX_BLOCK_SLICE);
            if let Some(next_due) = self.promote_if_due(&group).await {
                wait = wait.min(next_due);
            }
            let now = Instant::now();
            let (keys, quiet_left) = {
                let mut st = group.lock_read();
                st.rotation = st.rotation.wrapping_add(1);
                let quiet_left = st
                    .ready_quiet_since
                    .and_then(|t| {
                        self.config()
                            .promote_interval
                            .checked_sub(now.saturating_duration_since(t))
                    })
                    .filter(|left| !left.is_zero());
                if quiet_left.is_none() {
                    st.ready_quiet_since = None;
                }
                (
                    group.live_keys(st.rotation, quiet_left.is_none()),
                    quiet_left,
                )
            };
            // Ready streams left out are asked again once the quiet time
            // is over, even by a read that blocks.
            if let Some(left) = quiet_left {
                wait = wait.min(left);
            }
            let read = ReadGroup::new(&group.config.name, &group.consumer, &keys, count)
                .with_block(Some(wait));
            let replies = self
                .with_recovery(&group, || self.backend().read_group(read.clone()))
                .await?;
            if quiet_left.is_none() {
                // Leaving the ready streams out pays when the read was
                // full (asking them cost a second round of the fair count
                // rule), and is safe when they gave nothing although each
                // key was offered a share of at least one (a key that had
                // entries gave its share).
                let from_ready = replies
                    .iter()
                    .any(|k| !k.entries.is_empty() && group.is_ready_key(&k.key));
                let total: usize = replies.iter().map(|k| k.entries.len()).sum();
                let mut st = group.lock_read();
                if from_ready {
                    st.ready_quiet_since = None;
                } else if total >= count && count >= keys.len() && st.ready_quiet_since.is_none() {
                    st.ready_quiet_since = Some(now);
                }
            }
            let messages = self.deliver(&group, replies, true);
            if !messages.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(messages);
            }
        }
    }

    /// Moves the group's due retries into its ready streams, when a known
    /// retry is due or the promote interval has passed. Returns the time until
    /// the next known retry. A failure is logged, counted and shown by
    /// `health`, and never stops the read that asked.
    pub(crate) async fn promote_if_due(&self, group: &Group) -> Option<Duration> {
        if !self.supports(Feature::RetrySchedule) {
            return None;
        }
        let now = Instant::now();
        {
            let mut st = group.lock_read();
            let interval_passed = st
                .last_promote
                .is_none_or(|t| now.duration_since(t) >= self.config().promote_interval);
            let known_due = st.next_due.is_some_and(|d| d <= now);
            if !interval_passed && !known_due {
                return st.next_due.map(until);
            }
            st.last_promote = Some(now);
        }
        let (next, error) = match self.promote_group(group).await {
            Ok(round) => (round.next_due_in, round.error),
            Err(e) => (None, Some(e.to_string())),
        };
        group.lock_read().next_due = next.and_then(|d| now.checked_add(d));
        self.report_promotion(group, error);
        next
    }

    /// One promotion of every schedule of `group`.
    pub(crate) async fn promote_group(&self, group: &Group) -> Result<PromoteRound> {
        let results = self
            .backend()
            .promote_due(&group.schedules, PROMOTE_LIMIT)
            .await?;
        let promoted: u64 = results.iter().map(|p| p.promoted).sum();
        if promoted > 0 {
            // What was promoted is read at once.
            group.lock_read().ready_quiet_since = None;
        }
        self.count(Count::Promoted, Labels::group(&group.config.name), promoted);
        let errors: Vec<String> = results
            .iter()
            .zip(&group.schedules)
            .filter_map(|(p, keys)| {
                p.error
                    .as_ref()
                    .map(|e| format!("retry schedule `{}`: {e}", keys.schedule))
            })
            .collect();
        Ok(PromoteRound {
            promoted,
            most_from_one: results.iter().map(|p| p.promoted).max().unwrap_or(0),
            next_due_in: results.iter().filter_map(|p| p.next_due_in).min(),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        })
    }

    /// After start, the entries this consumer held come first, one message
    /// per call: each of them may have crashed the consumer, so it is
    /// handed out alone. The list is taken once, before anything is read
    /// live, so work delivered since is never handed out twice. Returns
    /// `None` when the backlog is done, or another task is delivering from
    /// it (this one reads live entries meanwhile).
    async fn read_backlog(&self, group: &Group) -> Result<Option<Vec<StreamMessage>>> {
        if group.backlog_done.load(Ordering::Acquire) {
            return Ok(None);
        }
        let mut backlog = if group.backlog_listed.load(Ordering::Acquire) {
            match group.backlog.try_lock() {
                Ok(backlog) => backlog,
                Err(_) => return Ok(None),
            }
        } else {
            group.backlog.lock().await
        };
        self.list_backlog_into(group, &mut backlog).await?;
        loop {
            let Backlog::Listed(queue) = &mut *backlog else {
                return Ok(None);
            };
            let Some(held) = queue.front_mut() else {
                *backlog = Backlog::Done;
                group.backlog_done.store(true, Ordering::Release);
                return Ok(None);
            };
            let attempt = held.clone();
            held.tried = true;
            let messages = self.redeliver_entry(group, &attempt).await?;
            // Only once it has been delivered again: a read cancelled or
            // failed before then leaves it first in line.
            queue.pop_front();
            if !messages.is_empty() {
                return Ok(Some(messages));
            }
        }
    }

    /// Lists the backlog if that has not been done. Claims do it too before
    /// they claim, so that the list's delivery counts tell which entries a
    /// claim has taken since.
    pub(crate) async fn ensure_backlog_listed(&self, group: &Group) -> Result<()> {
        if group.backlog_listed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut backlog = group.backlog.lock().await;
        self.list_backlog_into(group, &mut backlog).await
    }

    async fn list_backlog_into(&self, group: &Group, backlog: &mut Backlog) -> Result<()> {
        if matches!(*backlog, Backlog::Unlisted) {
            *backlog = Backlog::Listed(self.list_backlog(group).await?);
            group.backlog_listed.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// The entries this consumer holds now in every key of the group.
    async fn list_backlog(&self, group: &Group) -> Result<VecDeque<Held>> {
        const PAGE: usize = 1000;
        let mut out = VecDeque::new();
        for key in group.all_keys() {
            let mut start = Bound::Unbounded;
            loop {
                let query = PendingQuery::new(key, &group.config.name, PAGE)
                    .of_consumer(&group.consumer)
                    .within(start.clone(), Bound::Unbounded);
                let page = match self
                    .with_recovery(group, || self.backend().pending(query.clone()))
                    .await
                {
                    Ok(page) => page,
                    // The group is missing on this key even after recovery
                    // (it was deleted): nothing is held there.
                    Err(StreamError::NoGroup { .. }) => Vec::new(),
                    Err(e) => return Err(e),
                };
                let full = page.len() >= PAGE;
                let Some(last) = page.last().map(|p| p.id.clone()) else {
                    break;
                };
                out.extend(page.into_iter().map(|p| Held {
                    key: key.to_owned(),
                    id: p.id,
                    deliveries: p.deliveries,
                    tried: false,
                }));
                if !full {
                    break;
                }
                start = Bound::Excluded(last);
            }
        }
        if !out.is_empty() {
            tracing::info!(
                group = %group.config.name,
                consumer = %group.consumer,
                entries = out.len(),
                "resuming this consumer's unfinished messages, one per read"
            );
        }
        Ok(out)
    }

    /// Delivers one backlog entry again if this consumer still holds it and
    /// nothing delivered it since: the message (unless it was poison), or
    /// nothing.
    async fn redeliver_entry(&self, group: &Group, held: &Held) -> Result<Vec<StreamMessage>> {
        let key = held.key.as_str();
        let ids = [held.id.clone()];
        let counts = [held.deliveries];
        let mut lease = Lease::new(key, &group.config.name, &group.consumer, &ids);
        if !held.tried {
            lease = lease.with_deliveries(&counts);
        }
        let reply = self
            .with_recovery(group, || self.backend().redeliver(lease.clone()))
            .await?;
        // An entry trimmed away while pending: acknowledge and count it.
        if !reply.deleted.is_empty() {
            let n = self
                .backend()
                .ack(Ack::new(key, &group.config.name, &reply.deleted))
                .await?;
            let stream = self.logical_stream(group, key);
            if n > 0 {
                tracing::warn!(
                    stream = %stream, group = %group.config.name, entries = n, ids = ?reply.deleted,
                    "pending entries were trimmed or deleted from the stream before they were handled; acknowledged them"
                );
            }
            self.count(
                Count::PendingDeleted,
                Labels::stream_group(stream, &group.config.name),
                n,
            );
        }
        let messages = self.deliver(group, vec![reply], false);
        self.screen_poison(group, messages).await
    }

    /// Decodes one entry; the backend's time for its id stands in for a
    /// missing `ts`.
    pub(crate) fn decode_entry(&self, stream: &str, entry: &Entry) -> StreamMessage {
        self.decode_owned(stream, entry.clone())
    }

    /// [`decode_entry`](Self::decode_entry), taking the entry apart.
    pub(crate) fn decode_owned(&self, stream: &str, entry: Entry) -> StreamMessage {
        let mut msg = codec::decode_owned(stream, entry.id.into_string(), entry.fields);
        if msg.timestamp.is_empty() {
            let id = EntryId::from(std::mem::take(&mut msg.id));
            if let Some(time) = self.backend().entry_time(&id) {
                msg.timestamp = codec::rfc3339(time);
            }
            msg.id = id.into_string();
        }
        msg
    }

    /// Decodes read entries into messages delivered through `group`. For
    /// `live` reads, remembers the last entry delivered per stream.
    pub(crate) fn deliver(
        &self,
        group: &Group,
        replies: Vec<KeyEntries>,
        live: bool,
    ) -> Vec<StreamMessage> {
        let mut out = Vec::with_capacity(replies.iter().map(|r| r.entries.len()).sum());
        for reply in replies {
            let logical = self.logical_stream(group, &reply.key);
            let from_retry = group.source_of(&reply.key).is_some_and(|(_, r)| r);
            let mut malformed = 0;
            let before = out.len();
            if live && !from_retry {
                if let Some(last) = reply.entries.last() {
                    group
                        .lock_read()
                        .last_delivered
                        .insert(reply.key.clone(), last.entry.id.clone());
                }
            }
            for delivered in reply.entries {
                let deliveries = delivered.deliveries.max(1);
                let mut msg = self.decode_owned(logical, delivered.entry);
                if msg.status == MessageStatus::Failed {
                    malformed += 1;
                }
                msg.delivery = Some(
                    Delivery::new(
                        Arc::clone(&group.names.0),
                        Arc::clone(&group.names.1),
                        deliveries,
                    )
                    .from_retry(from_retry),
                );
                out.push(msg);
            }
            let name = group.config.name.as_str();
            let read = (out.len() - before) as u64;
            let labels = Labels::delivery(logical, name, &group.consumer);
            self.count(Count::Read, labels, read);
            self.count(Count::Malformed, labels, malformed);
        }
        out
    }

    /// The logical stream of a key of `group`: the stream it belongs to, for
    /// ready streams too.
    pub(crate) fn logical_stream<'a>(&'a self, group: &'a Group, key: &'a str) -> &'a str {
        match group.source_of(key) {
            Some((s, _)) => s.logical.as_str(),
            None => self.keys().logical(key).unwrap_or(key),
        }
    }
}
