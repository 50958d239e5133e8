//! The dead-letter queue.

use std::sync::atomic::Ordering;

use super::Manager;
use crate::backend::{Add, Move, MoveOutcome, MoveTarget, StreamBackend, Trim};
use crate::codec::{dlq_fields, now_rfc3339};
use crate::error::{Result, StreamError};
use crate::message::{DeadLetter, StreamMessage};

impl<B: StreamBackend> Manager<B> {
    /// Writes a message to the dead-letter queue with its provenance.
    /// See [`StreamManager::send_to_dlq`](crate::StreamManager::send_to_dlq).
    ///
    /// # Errors
    /// [`StreamError::DlqDisabled`], [`StreamError::NotOwner`],
    /// [`StreamError::GroupNotFound`], connection errors.
    pub async fn send_to_dlq(
        &self,
        message: &StreamMessage,
        reason: &str,
        group_name: Option<&str>,
    ) -> Result<String> {
        self.ready().await?;
        let dlq = &self.config().dlq;
        if !dlq.enabled {
            return Err(StreamError::DlqDisabled {
                id: message.id.clone(),
            });
        }
        let group = match group_name {
            Some(name) => Some(self.group(name).await?),
            None => None,
        };
        let delivery = message.delivery.as_ref();
        let consumer = delivery
            .map(|d| d.consumer.clone())
            .or_else(|| group.as_ref().map(|g| g.consumer.clone()));
        let dead = DeadLetter {
            origin_stream: message.stream.clone(),
            origin_id: message.id.clone(),
            group: group_name.map(str::to_owned),
            consumer: consumer.clone(),
            reason: reason.to_owned(),
            failed_at: now_rfc3339(),
            deliveries: delivery.and_then(|d| d.deliveries),
        };
        let fields = dlq_fields(message, &dead);
        let key = self.keys().dlq(&message.stream);
        let trim = vec![
            Trim::MaxLen {
                len: dlq.max_len,
                approx: true,
            },
            Trim::MaxAge {
                age: dlq.max_retention,
                approx: true,
            },
        ];
        let id = match group_name {
            None => self.backend().add(Add { key, fields, trim }).await?,
            Some(group_name) => {
                let (source, from_retry) = self.read_key(message, group_name);
                let consumer = consumer.unwrap_or_else(|| self.consumer_id().to_owned());
                let outcome = self
                    .backend()
                    .move_entry(Move {
                        source: source.clone(),
                        group: group_name.to_owned(),
                        id: message.id.clone(),
                        consumer: Some(consumer.clone()),
                        delete_source: from_retry,
                        target: MoveTarget::Stream { key, fields, trim },
                    })
                    .await?;
                moved_or_refused(outcome, source, group_name, &message.id, consumer)?
                    .unwrap_or_default()
            }
        };
        let c = &self.inner.counters;
        c.dead_lettered.fetch_add(1, Ordering::Relaxed);
        c.failed.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }
}

/// Turns a refused move into [`StreamError::NotOwner`].
pub(crate) fn moved_or_refused(
    outcome: MoveOutcome,
    stream: String,
    group: &str,
    id: &str,
    consumer: String,
) -> Result<Option<String>> {
    let owner = match outcome {
        MoveOutcome::Moved { new_id } => return Ok(new_id),
        MoveOutcome::NotPending => None,
        MoveOutcome::OwnedBy(owner) => Some(owner),
    };
    Err(StreamError::NotOwner {
        stream,
        group: group.to_owned(),
        id: id.to_owned(),
        consumer,
        owner,
    })
}
