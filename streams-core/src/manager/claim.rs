//! Claiming abandoned work, and recognising poison messages.

use std::collections::HashMap;
use std::time::Duration;

use super::stats::Counters;
use super::{Group, Manager};
use crate::backend::{KeyEntries, StreamBackend};
use crate::error::{Result, StreamError};
use crate::message::StreamMessage;

/// The dead-letter reason of a poison message.
pub const MAX_DELIVERIES_EXCEEDED: &str = "max deliveries exceeded";

impl<B: StreamBackend> Manager<B> {
    /// Claims every entry of the group idle for at least `idle`.
    /// See [`StreamManager::claim_pending_messages`](crate::StreamManager::claim_pending_messages).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::InvalidName`], connection errors.
    pub async fn claim_pending_messages(
        &self,
        group_name: &str,
        idle: Option<Duration>,
    ) -> Result<Vec<StreamMessage>> {
        self.ready().await?;
        let group = self.group(group_name).await?;
        let idle = idle.unwrap_or(group.config.claim_idle);
        let page_size = self.config().claim_page_size;
        let name = group.config.name.as_str();
        let mut claimed = Vec::new();
        for key in group.all_keys() {
            let mut start = "0-0".to_owned();
            loop {
                let page = self
                    .with_recovery(&group, || {
                        self.backend().auto_claim(
                            key,
                            name,
                            &group.consumer,
                            idle,
                            &start,
                            page_size,
                        )
                    })
                    .await?;
                if !page.deleted.is_empty() {
                    // Redis 7 already dropped them from the pending list; 6.2 did not.
                    self.backend().ack(key, name, &page.deleted, false).await?;
                    Counters::add(
                        &self.inner.counters.pending_deleted,
                        page.deleted.len() as u64,
                    );
                }
                let progressed = !page.entries.is_empty() || !page.deleted.is_empty();
                let deliveries: HashMap<(String, String), u64> = page
                    .entries
                    .iter()
                    .map(|c| ((key.to_owned(), c.entry.id.clone()), c.deliveries))
                    .collect();
                let reply = KeyEntries {
                    key: key.to_owned(),
                    entries: page.entries.into_iter().map(|c| c.entry).collect(),
                    deleted: Vec::new(),
                };
                claimed.extend(self.deliver(&group, vec![reply], &deliveries));
                if page.next == "0-0" || (page.next == start && !progressed) {
                    break;
                }
                start = page.next;
            }
        }
        let messages = self.screen_poison(&group, claimed).await?;
        Counters::add(&self.inner.counters.claimed, messages.len() as u64);
        Ok(messages)
    }

    /// Dead-letters messages delivered more than `retry_limit + 1` times
    /// (counting earlier retries) and returns the others. With the
    /// dead-letter queue disabled, every message is returned.
    pub(crate) async fn screen_poison(
        &self,
        group: &Group,
        messages: Vec<StreamMessage>,
    ) -> Result<Vec<StreamMessage>> {
        let dlq = &self.config().dlq;
        if !dlq.enabled {
            return Ok(messages);
        }
        let mut keep = Vec::with_capacity(messages.len());
        for msg in messages {
            let known = msg.delivery.as_ref().and_then(|d| d.deliveries).is_some();
            if known && msg.retry_count > dlq.retry_limit {
                tracing::warn!(
                    stream = %msg.stream, id = %msg.id, group = %group.config.name,
                    retry_count = msg.retry_count, "poison message: sending it to the dead-letter queue"
                );
                match self
                    .send_to_dlq(&msg, MAX_DELIVERIES_EXCEEDED, Some(&group.config.name))
                    .await
                {
                    Ok(_) => {
                        Counters::add(&self.inner.counters.poison, 1);
                        continue;
                    }
                    // Another consumer took it meanwhile: it is not ours to handle.
                    Err(StreamError::NotOwner { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            keep.push(msg);
        }
        Ok(keep)
    }
}
