//! Reading: `read_messages`, with the restart backlog and promotion of due retries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::stats::Counters;
use super::{Group, Manager, until};
use crate::backend::{KeyEntries, PendingQuery, ReadCursor, ReadGroup, StreamBackend};
use crate::codec;
use crate::error::{Result, StreamError};
use crate::message::{Delivery, MessageStatus, StreamMessage};

/// Most due retries moved per schedule in one promotion.
const PROMOTE_LIMIT: usize = 1000;

/// Compares two entry ids numerically (`<ms>-<seq>`).
pub(crate) fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

impl<B: StreamBackend> Manager<B> {
    /// Reads the next messages of a group for this consumer.
    /// See [`StreamManager::read_messages`](crate::StreamManager::read_messages).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::InvalidName`], connection errors.
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
        let deadline = Instant::now() + block.unwrap_or(group.config.block);

        if let Some(messages) = self.read_backlog(&group, count).await? {
            if !messages.is_empty() {
                return Ok(messages);
            }
        }

        loop {
            // Wake up for the next known retry rather than sleeping past it.
            let mut wait = until(deadline);
            if let Some(next_due) = self.promote_if_due(&group).await? {
                wait = wait.min(next_due);
            }
            let read = ReadGroup {
                group: &group.config.name,
                consumer: &group.consumer,
                keys: &group.live_keys,
                count,
                block: (!wait.is_zero()).then_some(wait),
            };
            let replies = self
                .with_recovery(&group, || self.backend().read_group(read.clone()))
                .await?;
            let messages = self.deliver(&group, replies, &HashMap::new());
            if !messages.is_empty() || Instant::now() >= deadline {
                return Ok(messages);
            }
        }
    }

    /// Moves the group's due retries into its ready streams, when a known
    /// retry is due or the promote interval has passed. Returns the time until
    /// the next known retry.
    pub(crate) async fn promote_if_due(&self, group: &Group) -> Result<Option<Duration>> {
        let now = Instant::now();
        {
            let st = group.lock_read();
            let interval_passed = st
                .last_promote
                .is_none_or(|t| now.duration_since(t) >= self.config().promote_interval);
            let known_due = st.next_due.is_some_and(|d| d <= now);
            if !interval_passed && !known_due {
                return Ok(st.next_due.map(until));
            }
        }
        let results = self
            .backend()
            .promote_due(&group.promote_pairs, PROMOTE_LIMIT)
            .await?;
        let promoted: u64 = results.iter().map(|p| p.promoted).sum();
        Counters::add(&self.inner.counters.promoted, promoted);
        let next = results.iter().filter_map(|p| p.next_due_in).min();
        let mut st = group.lock_read();
        st.last_promote = Some(now);
        st.next_due = next.map(|d| now + d);
        Ok(next)
    }

    /// After start, this consumer's own pending entries come first. Returns
    /// `None` when the backlog is done (or another task is reading it).
    async fn read_backlog(
        &self,
        group: &Group,
        count: usize,
    ) -> Result<Option<Vec<StreamMessage>>> {
        let backlog = {
            let mut st = group.lock_read();
            if st.backlog_busy {
                return Ok(None);
            }
            match st.backlog.clone() {
                Some(b) => {
                    st.backlog_busy = true;
                    b
                }
                None => return Ok(None),
            }
        };
        let result = self.read_backlog_once(group, &backlog, count).await;
        let mut st = group.lock_read();
        st.backlog_busy = false;
        match result {
            Ok((messages, remaining)) => {
                st.backlog = (!remaining.is_empty()).then_some(remaining);
                Ok(Some(messages))
            }
            Err(e) => Err(e),
        }
    }

    async fn read_backlog_once(
        &self,
        group: &Group,
        backlog: &[(String, String)],
        count: usize,
    ) -> Result<(Vec<StreamMessage>, Vec<(String, String)>)> {
        let keys: Vec<(String, ReadCursor)> = backlog
            .iter()
            .map(|(k, c)| (k.clone(), ReadCursor::Pending(c.clone())))
            .collect();
        let read = ReadGroup {
            group: &group.config.name,
            consumer: &group.consumer,
            keys: &keys,
            count,
            block: None,
        };
        let replies = self
            .with_recovery(group, || self.backend().read_group(read.clone()))
            .await?;

        // Keys that returned nothing are done; the others go on after their last id.
        let mut remaining = Vec::new();
        for (key, _) in backlog {
            let Some(reply) = replies.iter().find(|r| &r.key == key) else {
                continue;
            };
            let last = reply
                .entries
                .iter()
                .map(|e| e.id.as_str())
                .chain(reply.deleted.iter().map(String::as_str))
                .max_by_key(|id| id_key(id));
            if let Some(last) = last {
                remaining.push((key.clone(), last.to_owned()));
            }
        }

        // Entries trimmed away while pending: acknowledge and count them.
        for reply in &replies {
            if !reply.deleted.is_empty() {
                let n = self
                    .backend()
                    .ack(&reply.key, &group.config.name, &reply.deleted, false)
                    .await?;
                Counters::add(&self.inner.counters.pending_deleted, n);
            }
        }

        // Re-delivered entries: learn their delivery counts, so a message that
        // keeps crashing its consumer is recognised as poison.
        let mut deliveries = HashMap::new();
        for reply in &replies {
            let (Some(first), Some(last)) = (reply.entries.first(), reply.entries.last()) else {
                continue;
            };
            let pending = self
                .backend()
                .pending(PendingQuery {
                    key: &reply.key,
                    group: &group.config.name,
                    start: &first.id,
                    end: &last.id,
                    count: reply.entries.len(),
                    consumer: Some(&group.consumer),
                    min_idle: None,
                })
                .await?;
            for p in pending {
                deliveries.insert((reply.key.clone(), p.id), p.deliveries);
            }
        }
        let messages = self.deliver(group, replies, &deliveries);
        let messages = self.screen_poison(group, messages).await?;
        Ok((messages, remaining))
    }

    /// Decodes read entries into messages delivered through `group`.
    pub(crate) fn deliver(
        &self,
        group: &Group,
        replies: Vec<KeyEntries>,
        deliveries: &HashMap<(String, String), u64>,
    ) -> Vec<StreamMessage> {
        let mut out = Vec::with_capacity(replies.iter().map(|r| r.entries.len()).sum());
        let mut malformed = 0;
        for reply in replies {
            let (logical, from_retry) = match group.source_of(&reply.key) {
                Some((s, from_retry)) => (s.logical.as_str(), from_retry),
                None => (self.keys().logical(&reply.key).unwrap_or(&reply.key), false),
            };
            for entry in reply.entries {
                let known = if deliveries.is_empty() {
                    None
                } else {
                    deliveries
                        .get(&(reply.key.clone(), entry.id.clone()))
                        .copied()
                };
                let mut msg = codec::decode(logical, &entry.id, &entry.fields);
                if msg.status == MessageStatus::Failed {
                    malformed += 1;
                }
                if let Some(n) = known {
                    msg.retry_count = msg.retry_count.saturating_add(redeliveries(n));
                }
                msg.delivery = Some(Delivery {
                    group: group.config.name.clone(),
                    consumer: group.consumer.clone(),
                    from_retry,
                    deliveries: known,
                });
                out.push(msg);
            }
        }
        Counters::add(&self.inner.counters.read, out.len() as u64);
        Counters::add(&self.inner.counters.malformed, malformed);
        out
    }
}

/// Deliveries beyond the first, as a retry count.
pub(crate) fn redeliveries(deliveries: u64) -> u32 {
    u32::try_from(deliveries.saturating_sub(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_numerically() {
        assert!(id_key("10-0") > id_key("9-5"));
        assert!(id_key("9-10") > id_key("9-9"));
        assert_eq!(id_key("0"), (0, 0));
        assert_eq!(redeliveries(1), 0);
        assert_eq!(redeliveries(0), 0);
        assert_eq!(redeliveries(4), 3);
    }
}
