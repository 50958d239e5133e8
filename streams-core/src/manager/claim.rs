//! Claiming abandoned work, and recognising poison messages.

use std::time::Duration;

use super::{Group, Manager};
use crate::backend::{Ack, AutoClaim, Cursor, Feature, KeyEntries, StreamBackend};
use crate::config::RetryPolicy;
use crate::error::{Result, StreamError};
use crate::message::{Delivery, StreamMessage};
use crate::observe::{Count, Labels};

/// Where a claim goes on: a key of the group (by its place in
/// `Group::all_keys`) and a cursor in it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClaimFrom {
    pub(crate) key: usize,
    pub(crate) cursor: Option<Cursor>,
}

/// The dead-letter reason of a poison message.
pub const MAX_DELIVERIES_EXCEEDED: &str = "max deliveries exceeded";

/// Whether a redelivered message has crashed its consumers too often to be
/// handed out again.
///
/// Its failed attempts are the retries before this copy (`retry_count`)
/// plus the deliveries of this copy that ended unsettled (`deliveries - 1`:
/// hand-backs are not counted, so these are attempts cut short by a crash
/// or a stall). It is poison once they exceed the retry limit, but never
/// on the first redelivery of a copy: that one crash may have been another
/// message's (everything in flight is redelivered after a crash), so every
/// message gets one attempt alone before a crash counts against it.
pub(crate) fn is_poison(message: &StreamMessage, policy: &RetryPolicy) -> bool {
    let Some(delivery) = &message.delivery else {
        return false;
    };
    let crashed = delivery.deliveries.saturating_sub(1);
    let failed = u64::from(message.retry_count).saturating_add(crashed);
    crashed >= 2 && failed > u64::from(policy.limit)
}

impl<B: StreamBackend> Manager<B> {
    /// Claims entries of the group idle for at least `idle`.
    /// See [`StreamManager::claim_pending_messages`](crate::StreamManager::claim_pending_messages).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::InvalidName`],
    /// [`StreamError::Unsupported`], connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(group = group_name))]
    pub async fn claim_pending_messages(
        &self,
        group_name: &str,
        idle: Option<Duration>,
    ) -> Result<Vec<StreamMessage>> {
        self.ready().await?;
        self.require(Feature::ExplicitClaims, "claim_pending_messages")?;
        let group = self.group(group_name).await?;
        let idle = idle.unwrap_or(group.config.claim_idle);
        self.ensure_backlog_listed(&group).await?;
        // A claim that stopped at a crash suspect left where to go on, so
        // that draining a group costs one pass, not one pass per suspect.
        let resume = group.lock_read().claim_from.take();
        let midway = resume.is_some();
        let mut pass = self
            .claim_pass(&group, idle, resume.unwrap_or_default())
            .await?;
        if pass.0.is_empty() && midway {
            // Nothing from there to the end: one whole pass from the start.
            pass = self.claim_pass(&group, idle, ClaimFrom::default()).await?;
        }
        let (claimed, next) = pass;
        group.lock_read().claim_from = next;
        for m in &claimed {
            let labels = Labels::delivery(&m.stream, &group.config.name, &group.consumer);
            self.count(Count::Claimed, labels, 1);
        }
        Ok(claimed)
    }

    /// One claiming pass from `from` to the end of the group's keys, or to
    /// the first crash suspect; with where the next claim goes on then.
    async fn claim_pass(
        &self,
        group: &Group,
        idle: Duration,
        from: ClaimFrom,
    ) -> Result<(Vec<StreamMessage>, Option<ClaimFrom>)> {
        let page_size = self.config().claim_page_size;
        let name = group.config.name.as_str();
        let keys: Vec<&str> = group.all_keys().collect();
        let mut claimed = Vec::new();
        for (index, key) in keys.iter().copied().enumerate().skip(from.key) {
            let mut cursor = if index == from.key {
                from.cursor.clone()
            } else {
                None
            };
            loop {
                let request = AutoClaim::new(key, name, &group.consumer, idle, page_size)
                    .from_cursor(cursor.clone())
                    .until_redelivered();
                let page = self
                    .with_recovery(group, || self.backend().auto_claim(request.clone()))
                    .await?;
                if !page.deleted.is_empty() {
                    // Counted and logged as found, before the ack: Redis
                    // (7.0 and newer) has dropped them from the pending
                    // list already, so a failed ack must not keep them out
                    // of the count. A backend that keeps them pending
                    // reports them again if the ack fails.
                    let stream = self.logical_stream(group, key);
                    tracing::warn!(
                        stream = %stream, group = name, entries = page.deleted.len(),
                        ids = ?page.deleted,
                        "pending entries were trimmed or deleted from the stream before they were handled; acknowledging them"
                    );
                    self.count(
                        Count::PendingDeleted,
                        Labels::stream_group(stream, name),
                        page.deleted.len() as u64,
                    );
                    self.backend()
                        .ack(Ack::new(key, name, &page.deleted))
                        .await?;
                }
                let mut reply = KeyEntries::new(key);
                reply.entries = page.entries;
                let messages = self.deliver(group, vec![reply], false);
                let messages = self.screen_poison(group, messages).await?;
                // A redelivered message may have crashed its last consumer:
                // it is taken alone; the others wait for the next claim.
                let alone = messages
                    .iter()
                    .any(|m| m.delivery.as_ref().is_some_and(Delivery::is_redelivery));
                claimed.extend(messages);
                let next = page.next.filter(|n| Some(n) != cursor.as_ref());
                if alone {
                    let resume = match next {
                        Some(cursor) => Some(ClaimFrom {
                            key: index,
                            cursor: Some(cursor),
                        }),
                        None => (index + 1 < keys.len()).then(|| ClaimFrom {
                            key: index + 1,
                            cursor: None,
                        }),
                    };
                    return Ok((claimed, resume));
                }
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok((claimed, None))
    }

    /// Dead-letters the poison messages among redelivered ones (see
    /// [`is_poison`]) and returns the others. With the dead-letter queue
    /// disabled, every message is returned.
    pub(crate) async fn screen_poison(
        &self,
        group: &Group,
        messages: Vec<StreamMessage>,
    ) -> Result<Vec<StreamMessage>> {
        if !self.config().dlq.enabled {
            return Ok(messages);
        }
        let policy = self.policy_of(group);
        let name = group.config.name.as_str();
        let mut keep = Vec::with_capacity(messages.len());
        for msg in messages {
            if is_poison(&msg, &policy) {
                tracing::warn!(
                    stream = %msg.stream, id = %msg.id, group = %group.config.name,
                    retry_count = msg.retry_count,
                    deliveries = msg.delivery.as_ref().map_or(0, |d| d.deliveries),
                    "poison message: sending it to the dead-letter queue"
                );
                // This delivery found it poison and never reached a
                // handler: the dead letter records the handler attempts.
                let mut attempts = msg.clone();
                if let Some(d) = attempts.delivery.as_mut() {
                    d.deliveries = d.deliveries.saturating_sub(1);
                }
                match self
                    .send_to_dlq(&attempts, MAX_DELIVERIES_EXCEEDED, Some(&group.config.name))
                    .await
                {
                    Ok(_) => {
                        let labels = Labels::delivery(&msg.stream, name, &group.consumer);
                        self.count(Count::Poison, labels, 1);
                        continue;
                    }
                    // Another consumer took it meanwhile: it is not ours to handle.
                    Err(StreamError::NotOwner { .. }) => continue,
                    // Closing stops everything.
                    Err(StreamError::Closed) => return Err(StreamError::Closed),
                    // It stays pending and is not handed to a handler (it
                    // would crash it again); the other messages go on. A
                    // later claim tries the dead-letter queue again.
                    Err(e) => {
                        tracing::error!(
                            stream = %msg.stream, id = %msg.id, group = %group.config.name,
                            error = %e,
                            "could not dead-letter a poison message; it stays pending"
                        );
                        let labels = Labels::delivery(&msg.stream, name, &group.consumer);
                        self.count(Count::PoisonDlqFailed, labels, 1);
                        continue;
                    }
                }
            }
            keep.push(msg);
        }
        Ok(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Delivery;

    fn delivered(retry_count: u32, deliveries: u64) -> StreamMessage {
        let mut m = StreamMessage::new("s", serde_json::Map::new());
        m.retry_count = retry_count;
        m.delivery = Some(Delivery::new("g", "c", deliveries));
        m
    }

    #[test]
    fn poison_needs_two_crashes_of_one_copy() {
        let limit2 = RetryPolicy::new(2, Duration::ZERO, Duration::ZERO);
        // Crashed consumers: 1st delivery plus 2 crashes = 3 attempts, the limit.
        assert!(!is_poison(&delivered(0, 1), &limit2));
        assert!(!is_poison(&delivered(0, 3), &limit2));
        assert!(is_poison(&delivered(0, 4), &limit2));
        // Explicit retries count too.
        assert!(is_poison(&delivered(2, 3), &limit2));
        // One crash is never enough: the crash may have been another message's.
        assert!(!is_poison(&delivered(2, 2), &limit2));
        assert!(!is_poison(&delivered(9, 2), &limit2));
        let limit0 = RetryPolicy::new(0, Duration::ZERO, Duration::ZERO);
        assert!(!is_poison(&delivered(0, 2), &limit0));
        assert!(is_poison(&delivered(0, 3), &limit0));
        assert!(!is_poison(
            &StreamMessage::new("s", serde_json::Map::new()),
            &limit0
        ));
    }
}
