//! Acknowledging, and the lease of a message being worked on.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Manager;
use super::stats::Counters;
use crate::backend::StreamBackend;
use crate::error::{Result, StreamError};
use crate::message::StreamMessage;

/// Idle time given to handed-back entries: longer than any claim threshold.
const HANDED_BACK_IDLE: Duration = Duration::from_secs(10 * 365 * 86_400);

impl<B: StreamBackend> Manager<B> {
    /// The key a message was read from in `group`: the stream, or the group's
    /// ready stream for retry copies.
    pub(crate) fn read_key(&self, message: &StreamMessage, group: &str) -> (String, bool) {
        let from_retry = message.delivery.as_ref().is_some_and(|d| d.from_retry);
        let key = if from_retry {
            self.keys().retry_ready(&message.stream, group)
        } else {
            self.keys().stream(&message.stream)
        };
        (key, from_retry)
    }

    /// Acknowledges a message; returns whether it was pending.
    /// See [`StreamManager::acknowledge`](crate::StreamManager::acknowledge).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::InvalidName`], connection errors.
    pub async fn acknowledge(&self, message: &StreamMessage, group_name: &str) -> Result<bool> {
        Ok(self
            .acknowledge_many(std::slice::from_ref(message), group_name)
            .await?
            > 0)
    }

    /// Acknowledges many messages, one `XACK` per key; returns how many were pending.
    /// See [`StreamManager::acknowledge_many`](crate::StreamManager::acknowledge_many).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::InvalidName`], connection errors.
    pub async fn acknowledge_many(
        &self,
        messages: &[StreamMessage],
        group_name: &str,
    ) -> Result<u64> {
        self.ready().await?;
        self.group(group_name).await?;
        let mut by_key: BTreeMap<(String, bool), Vec<String>> = BTreeMap::new();
        for m in messages {
            by_key
                .entry(self.read_key(m, group_name))
                .or_default()
                .push(m.id.clone());
        }
        let mut acked = 0;
        for ((key, from_retry), ids) in by_key {
            acked += self
                .backend()
                .ack(&key, group_name, &ids, from_retry)
                .await?;
        }
        Counters::add(&self.inner.counters.acknowledged, acked);
        Ok(acked)
    }

    fn delivery_of<'m>(
        message: &'m StreamMessage,
        operation: &'static str,
    ) -> Result<&'m crate::message::Delivery> {
        message
            .delivery
            .as_ref()
            .ok_or_else(|| StreamError::NotDelivered {
                id: message.id.clone(),
                operation,
            })
    }

    /// Renews the lease on a message being worked on.
    /// See [`StreamManager::touch`](crate::StreamManager::touch).
    ///
    /// # Errors
    /// [`StreamError::NotDelivered`], connection errors.
    pub async fn touch(&self, message: &StreamMessage) -> Result<bool> {
        self.ready().await?;
        let delivery = Self::delivery_of(message, "touched")?;
        let (key, _) = self.read_key(message, &delivery.group);
        let touched = self
            .backend()
            .set_idle(
                &key,
                &delivery.group,
                &delivery.consumer,
                std::slice::from_ref(&message.id),
                Duration::ZERO,
            )
            .await?;
        Ok(!touched.is_empty())
    }

    /// Hands messages back unhandled, claimable at once.
    /// See [`StreamManager::release`](crate::StreamManager::release).
    ///
    /// # Errors
    /// [`StreamError::NotDelivered`], connection errors.
    pub async fn release(&self, messages: &[StreamMessage]) -> Result<u64> {
        self.ready().await?;
        let mut by_key: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
        for m in messages {
            let delivery = Self::delivery_of(m, "released")?;
            let (key, _) = self.read_key(m, &delivery.group);
            by_key
                .entry((key, delivery.group.clone(), delivery.consumer.clone()))
                .or_default()
                .push(m.id.clone());
        }
        let mut released = 0;
        for ((key, group, consumer), ids) in by_key {
            released += self
                .backend()
                .set_idle(&key, &group, &consumer, &ids, HANDED_BACK_IDLE)
                .await?
                .len() as u64;
        }
        Ok(released)
    }
}
