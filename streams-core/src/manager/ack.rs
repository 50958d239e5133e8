//! Acknowledging, and the lease of a message being worked on.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Manager;
use super::dlq::check_group;
use crate::backend::{Ack, EntryId, Lease, StreamBackend};
use crate::error::{Result, StreamError};
use crate::message::{Delivery, StreamMessage};
use crate::observe::{Count, Labels};

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
    /// [`StreamError::GroupNotFound`], [`StreamError::WrongGroup`],
    /// [`StreamError::InvalidName`], connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(stream = %message.stream, group = group_name, consumer = message.delivery.as_ref().map(|d| &*d.consumer), id = %message.id))]
    pub async fn acknowledge(&self, message: &StreamMessage, group_name: &str) -> Result<bool> {
        Ok(self
            .acknowledge_many(std::slice::from_ref(message), group_name)
            .await?
            > 0)
    }

    /// Acknowledges many messages, one call per key; returns how many were pending.
    /// See [`StreamManager::acknowledge_many`](crate::StreamManager::acknowledge_many).
    ///
    /// # Errors
    /// [`StreamError::GroupNotFound`], [`StreamError::WrongGroup`],
    /// [`StreamError::InvalidName`], connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(group = group_name, count = messages.len()))]
    pub async fn acknowledge_many(
        &self,
        messages: &[StreamMessage],
        group_name: &str,
    ) -> Result<u64> {
        self.ready().await?;
        let group = self.group(group_name).await?;
        for m in messages {
            check_group(m, group_name)?;
        }
        // Each key holds one stream's entries (or its retries) for this group.
        let mut by_key: BTreeMap<(String, bool), (&str, Vec<EntryId>)> = BTreeMap::new();
        for m in messages {
            by_key
                .entry(self.read_key(m, group_name))
                .or_insert_with(|| (m.stream.as_str(), Vec::new()))
                .1
                .push(EntryId::from(m.id.as_str()));
        }
        let mut acked = 0;
        for ((key, from_retry), (stream, ids)) in by_key {
            let n = self
                .backend()
                .ack(Ack::new(&key, group_name, &ids).deleting(from_retry))
                .await?;
            self.count(
                Count::Acked,
                Labels::delivery(stream, group_name, &group.consumer),
                n,
            );
            acked += n;
        }
        Ok(acked)
    }

    pub(crate) fn delivery_of<'m>(
        message: &'m StreamMessage,
        operation: &'static str,
    ) -> Result<&'m Delivery> {
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
    #[tracing::instrument(level = "debug", skip_all, fields(stream = %message.stream, group = message.group(), consumer = message.delivery.as_ref().map(|d| &*d.consumer), id = %message.id))]
    pub async fn touch(&self, message: &StreamMessage) -> Result<bool> {
        self.ready().await?;
        let delivery = Self::delivery_of(message, "touched")?;
        let (key, _) = self.read_key(message, &delivery.group);
        let ids = [EntryId::from(message.id.as_str())];
        let renewed = self
            .backend()
            .renew(Lease::new(&key, &delivery.group, &delivery.consumer, &ids))
            .await?;
        Ok(!renewed.is_empty())
    }

    /// Renews the leases on many messages, one call per stream key.
    /// See [`StreamManager::touch_many`](crate::StreamManager::touch_many).
    ///
    /// # Errors
    /// [`StreamError::NotDelivered`], connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(count = messages.len()))]
    pub async fn touch_many(&self, messages: &[StreamMessage]) -> Result<u64> {
        self.ready().await?;
        let mut by_key: BTreeMap<(String, Arc<str>, Arc<str>), Vec<EntryId>> = BTreeMap::new();
        for m in messages {
            let delivery = Self::delivery_of(m, "touched")?;
            let (key, _) = self.read_key(m, &delivery.group);
            by_key
                .entry((
                    key,
                    Arc::clone(&delivery.group),
                    Arc::clone(&delivery.consumer),
                ))
                .or_default()
                .push(EntryId::from(m.id.as_str()));
        }
        let mut renewed = 0;
        for ((key, group, consumer), ids) in by_key {
            let lease = Lease::new(&key, &group, &consumer, &ids);
            renewed += self.backend().renew(lease).await?.len() as u64;
        }
        Ok(renewed)
    }

    /// Hands messages back unhandled, claimable at once, not counted as
    /// deliveries. See [`StreamManager::release`](crate::StreamManager::release).
    ///
    /// # Errors
    /// [`StreamError::NotDelivered`], connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(count = messages.len()))]
    pub async fn release(&self, messages: &[StreamMessage]) -> Result<u64> {
        self.ready().await?;
        type Held<'m> = (&'m str, Vec<EntryId>, Vec<u64>);
        let mut by_key: BTreeMap<(String, Arc<str>, Arc<str>), Held<'_>> = BTreeMap::new();
        for m in messages {
            let delivery = Self::delivery_of(m, "released")?;
            let (key, _) = self.read_key(m, &delivery.group);
            let (_, ids, deliveries) = by_key
                .entry((
                    key,
                    Arc::clone(&delivery.group),
                    Arc::clone(&delivery.consumer),
                ))
                .or_insert_with(|| (m.stream.as_str(), Vec::new(), Vec::new()));
            ids.push(EntryId::from(m.id.as_str()));
            deliveries.push(delivery.deliveries);
        }
        let mut released = 0;
        for ((key, group, consumer), (stream, ids, deliveries)) in by_key {
            // With the counts the messages were delivered with, handing the
            // same delivery back twice gives back one delivery.
            let lease = Lease::new(&key, &group, &consumer, &ids).with_deliveries(&deliveries);
            let n = self.backend().hand_back(lease).await?.len() as u64;
            self.count(
                Count::HandedBack,
                Labels::delivery(stream, &group, &consumer),
                n,
            );
            released += n;
        }
        Ok(released)
    }
}
