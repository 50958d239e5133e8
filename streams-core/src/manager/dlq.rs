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
            // Unknown only for live reads (`>`), which are the first delivery.
            deliveries: delivery.map(|d| d.deliveries.unwrap_or(1)),
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

impl<B: StreamBackend> Manager<B> {
    /// The oldest `count` entries of the dead-letter queue, decoded, with their
    /// provenance in [`StreamMessage::dead_letter`]. With a per-stream layout,
    /// the dead-letter streams of the streams of every group this manager knows.
    ///
    /// # Errors
    /// Connection errors, [`StreamError::Closed`].
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<StreamMessage>> {
        self.ready().await?;
        let keys = self.keys();
        let mut dlq_streams: Vec<String> = if keys.dlq_is_shared() {
            vec![String::new()]
        } else {
            self.known_streams()
        };
        dlq_streams.dedup();
        let mut out = Vec::new();
        for stream in dlq_streams {
            let key = keys.dlq(&stream);
            let logical = keys.logical(&key).unwrap_or(&key).to_owned();
            for entry in self.backend().range(&key, "-", "+", count).await? {
                out.push(crate::codec::decode(&logical, &entry.id, &entry.fields));
            }
        }
        out.truncate(count);
        Ok(out)
    }
}
