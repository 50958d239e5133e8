//! Retries with exponential backoff, private to the group that retries.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Manager;
use super::dlq::moved_or_refused;
use crate::backend::{Move, MoveTarget, StreamBackend};
use crate::codec::{encode_data, envelope_fields, random_u64};
use crate::error::{Result, StreamError};
use crate::message::StreamMessage;

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
        let fields = envelope_fields(
            encode_data(&message.data),
            &message.timestamp,
            message.retry_count.saturating_add(1),
            message.mid.as_deref(),
            error,
        );
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
