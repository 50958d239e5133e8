//! Retries with exponential backoff, private to the group that retries.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Manager;
use super::dlq::moved_or_refused;
use crate::backend::{Fields, Move, MoveTarget, StreamBackend};
use crate::codec::{encode_data, envelope_fields, field, random_u64};
use crate::error::{Result, StreamError};
use crate::message::StreamMessage;

/// The fields of the envelope, which a retry copy writes afresh.
const ENVELOPE: [&str; 5] = [
    field::DATA,
    field::TS,
    field::RETRY_COUNT,
    field::MID,
    field::ERROR,
];

/// Fields another producer added beyond the envelope: the retry copy keeps
/// them, so a retry drops nothing. (The raw fields of malformed entries and
/// dead letters are another matter: those only a dead-letter move carries.)
fn extra_fields(message: &StreamMessage) -> Fields {
    match &message.raw {
        Some(raw) if !message.is_malformed() && message.dead_letter.is_none() => raw
            .fields()
            .iter()
            .filter(|(k, _)| !ENVELOPE.iter().any(|e| k.as_ref() == e.as_bytes()))
            .cloned()
            .collect(),
        _ => Fields::new(),
    }
}

impl<B: StreamBackend> Manager<B> {
    /// Schedules a retry of a failed message.
    /// See [`StreamManager::retry_message`](crate::StreamManager::retry_message).
    ///
    /// # Errors
    /// [`StreamError::NotDelivered`], [`StreamError::NotOwner`], connection errors.
    pub async fn retry_message(&self, message: &StreamMessage) -> Result<bool> {
        self.retry_inner(message, message.error.as_deref()).await
    }

    /// [`retry_message`](Self::retry_message), recording `error` as the
    /// message's last error in the retry copy.
    ///
    /// # Errors
    /// As [`retry_message`](Self::retry_message).
    pub async fn retry_with_error(&self, message: &StreamMessage, error: &str) -> Result<bool> {
        self.retry_inner(message, Some(error)).await
    }

    /// The delay before retry number `retry_count + 1`, with jitter.
    pub fn retry_delay(&self, retry_count: u32) -> Duration {
        let dlq = &self.config().dlq;
        let base = dlq.backoff(retry_count);
        if dlq.jitter > 0.0 {
            // 53 random bits as a fraction in [0, 1).
            let unit = (random_u64() >> 11) as f64 / (1u64 << 53) as f64;
            base + base.mul_f64(dlq.jitter * unit)
        } else {
            base
        }
    }

    async fn retry_inner(&self, message: &StreamMessage, error: Option<&str>) -> Result<bool> {
        self.ready().await?;
        let delivery = message
            .delivery
            .as_ref()
            .ok_or_else(|| StreamError::NotDelivered {
                id: message.id.clone(),
                operation: "retried",
            })?;
        if message.is_malformed() {
            // Re-encoding would replace the stored bytes with their lossy view,
            // and an undecodable entry fails the same way every time.
            return Err(StreamError::Decode {
                what: format!("message `{}` on `{}`", message.id, message.stream),
                message: "a malformed entry cannot be retried; send it to the dead-letter queue, which keeps its raw fields".to_owned(),
            });
        }
        if message.retry_count >= self.config().dlq.retry_limit {
            return Ok(false);
        }
        let group = self.group(&delivery.group).await?;
        let Some(source) = group.sources.iter().find(|s| s.logical == message.stream) else {
            return Err(StreamError::config(format!(
                "stream `{}` is not consumed by group `{}`, so a retry could never be read",
                message.stream, group.config.name
            )));
        };
        let delay = self.retry_delay(message.retry_count);
        let mut fields = envelope_fields(
            encode_data(&message.data),
            &message.timestamp,
            message.retry_count.saturating_add(1),
            message.mid.as_deref(),
            error,
        );
        fields.extend(extra_fields(message));
        let (read_key, from_retry) = self.read_key(message, &group.config.name);
        let outcome = self
            .backend()
            .move_entry(Move {
                source: read_key.clone(),
                group: group.config.name.clone(),
                id: message.id.clone(),
                consumer: Some(delivery.consumer.clone()),
                delete_source: from_retry,
                target: MoveTarget::Schedule {
                    key: source.schedule.clone(),
                    fields,
                    delay,
                },
            })
            .await?;
        moved_or_refused(
            outcome,
            read_key,
            &group.config.name,
            &message.id,
            delivery.consumer.clone(),
        )?;
        let due = Instant::now() + delay;
        {
            let mut st = group.lock_read();
            st.next_due = Some(st.next_due.map_or(due, |d| d.min(due)));
        }
        let c = &self.inner.counters;
        c.retried.fetch_add(1, Ordering::Relaxed);
        c.failed.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}
