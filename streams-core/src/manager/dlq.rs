//! The dead-letter queue.

use std::collections::BTreeSet;

use super::Manager;
use crate::backend::{
    Add, EntryId, Move, MoveOutcome, MoveTarget, RangeQuery, StreamBackend, Trim,
};
use crate::codec::{dlq_fields, now_rfc3339};
use crate::error::{Result, StreamError};
use crate::message::{DeadLetter, StreamMessage};
use crate::observe::{Count, Labels};

impl<B: StreamBackend> Manager<B> {
    /// Writes a message to the dead-letter queue with its provenance.
    /// See [`StreamManager::send_to_dlq`](crate::StreamManager::send_to_dlq).
    ///
    /// # Errors
    /// [`StreamError::DlqDisabled`], [`StreamError::NotOwner`],
    /// [`StreamError::WrongGroup`], [`StreamError::GroupNotFound`],
    /// connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(stream = %message.stream, group = group_name, consumer = message.delivery.as_ref().map(|d| d.consumer.as_str()), id = %message.id))]
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
            Some(name) => {
                let group = self.group(name).await?;
                check_group(message, name)?;
                Some(group)
            }
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
            deliveries: delivery.map(|d| d.deliveries),
        };
        let fields = dlq_fields(message, &dead);
        let counted_consumer = consumer.clone().unwrap_or_default();
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
            None => {
                let mut add = Add::new(key, fields);
                add.trim = trim;
                self.backend().add(add).await?
            }
            Some(group_name) => {
                let (source, from_retry) = self.read_key(message, group_name);
                let consumer = consumer.unwrap_or_else(|| self.consumer_id().to_owned());
                let target = MoveTarget::Stream { key, fields, trim };
                let mv = Move::new(
                    source.clone(),
                    group_name,
                    EntryId::from(message.id.as_str()),
                    target,
                )
                .fenced(consumer.clone())
                .deleting_source(from_retry);
                let outcome = self.backend().move_entry(mv).await?;
                moved_or_refused(outcome, message, group_name, consumer)?
                    .unwrap_or_else(|| EntryId::from(""))
            }
        };
        self.count(
            Count::DeadLettered,
            Labels::delivery(
                &message.stream,
                group_name.unwrap_or_default(),
                &counted_consumer,
            ),
            1,
        );
        Ok(id.into_string())
    }
}

/// Refuses to settle a message through a group that did not deliver it
/// ([`StreamError::WrongGroup`]); a message never delivered passes.
pub(crate) fn check_group(message: &StreamMessage, group: &str) -> Result<()> {
    match &message.delivery {
        Some(d) if d.group != group => Err(StreamError::WrongGroup {
            id: message.id.clone(),
            delivered_to: d.group.clone(),
            given: group.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Turns a refused move into [`StreamError::NotOwner`].
pub(crate) fn moved_or_refused(
    outcome: MoveOutcome,
    message: &StreamMessage,
    group: &str,
    consumer: String,
) -> Result<Option<EntryId>> {
    let owner = match outcome {
        MoveOutcome::Moved { new_id } => return Ok(new_id),
        MoveOutcome::OwnedBy(owner) => Some(owner),
        _ => None,
    };
    Err(StreamError::NotOwner {
        stream: message.stream.clone(),
        group: group.to_owned(),
        id: message.id.clone(),
        consumer,
        owner,
    })
}

impl<B: StreamBackend> Manager<B> {
    /// The dead-letter stream keys: the shared one, or with a per-stream
    /// layout those of the streams of every group registered or known here.
    pub(crate) async fn dlq_keys(&self) -> Result<BTreeSet<String>> {
        let keys = self.keys();
        if keys.dlq_is_shared() {
            return Ok(BTreeSet::from([keys.dlq("")]));
        }
        let mut streams: BTreeSet<String> = self.known_streams().into_iter().collect();
        for (name, json) in self.backend().registry_list(keys.registry()).await? {
            // An unreadable registry entry names no streams; it is reported elsewhere.
            if let Ok(super::group::Registered::Group(config)) =
                Self::parse_registered(&name, &json)
            {
                streams.extend(config.streams);
            }
        }
        Ok(streams.iter().map(|s| keys.dlq(s)).collect())
    }

    /// The oldest `count` entries of the dead-letter queue, decoded.
    /// See [`StreamManager::dead_letters`](crate::StreamManager::dead_letters).
    ///
    /// # Errors
    /// Connection errors, [`StreamError::Closed`].
    #[tracing::instrument(level = "debug", skip_all, fields(count))]
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<StreamMessage>> {
        self.ready().await?;
        let mut out = Vec::new();
        for key in self.dlq_keys().await? {
            let logical = self.keys().logical(&key).unwrap_or(&key).to_owned();
            for entry in self.backend().range(RangeQuery::new(&key, count)).await? {
                out.push(self.decode_entry(&logical, &entry));
            }
        }
        out.truncate(count);
        Ok(out)
    }
}
