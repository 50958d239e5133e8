//! The dead-letter queue.

use std::collections::BTreeSet;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::Manager;
use crate::backend::{
    Add, EntryId, Move, MoveOutcome, MoveTarget, RangeQuery, StreamBackend, Trim,
};
use crate::codec::{dlq_fields, now_rfc3339};
use crate::error::{Result, StreamError};
use crate::message::{DeadLetter, StreamMessage};
use crate::observe::{Count, Labels};

/// Longest time between two trims of a dead-letter stream by age; a
/// shorter `max_retention` trims ten times within it.
const AGE_TRIM_EVERY: Duration = Duration::from_secs(1);

/// A dead letter about to be written: where, and how the write is
/// accounted for.
struct DeadPlan {
    /// The move (with a group) or the add (without).
    write: DeadWrite,
    consumer: String,
    fence: Option<String>,
}

enum DeadWrite {
    Move(Move),
    Add(Add),
}

impl<B: StreamBackend> Manager<B> {
    /// Writes a message to the dead-letter queue with its provenance.
    /// See [`StreamManager::send_to_dlq`](crate::StreamManager::send_to_dlq).
    ///
    /// # Errors
    /// [`StreamError::DlqDisabled`], [`StreamError::NotOwner`],
    /// [`StreamError::WrongGroup`], [`StreamError::GroupNotFound`],
    /// connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(stream = %message.stream, group = group_name, consumer = message.delivery.as_ref().map(|d| &*d.consumer), id = %message.id))]
    pub async fn send_to_dlq(
        &self,
        message: &StreamMessage,
        reason: &str,
        group_name: Option<&str>,
    ) -> Result<String> {
        self.ready().await?;
        let plan = self.plan_dead_letter(message, reason, group_name).await?;
        let id = match plan.write {
            DeadWrite::Add(add) => Some(self.backend().add(add).await?),
            DeadWrite::Move(mv) => {
                let outcome = self.backend().move_entry(mv).await?;
                moved_or_refused(
                    outcome,
                    message,
                    group_name.unwrap_or_default(),
                    plan.fence.unwrap_or_default(),
                )?
            }
        };
        self.count_dead_letter(message, group_name, &plan.consumer);
        Ok(id.map(EntryId::into_string).unwrap_or_default())
    }

    /// Writes each message to the dead-letter queue, as
    /// [`send_to_dlq`](Self::send_to_dlq) does, in one round trip: the
    /// dead-letter entry id of each, in order (empty when the backend does
    /// not report it). One that is refused (taken by another consumer,
    /// delivered through another group) does not stop the others.
    /// See [`StreamManager::dead_letter_many`](crate::StreamManager::dead_letter_many).
    ///
    /// # Errors
    /// [`StreamError::DlqDisabled`], [`StreamError::GroupNotFound`],
    /// connection errors that leave every outcome unknown (some messages
    /// may have been dead-lettered), [`StreamError::Closed`].
    #[tracing::instrument(level = "debug", skip_all, fields(group = group_name, count = messages.len()))]
    pub async fn dead_letter_many(
        &self,
        messages: &[StreamMessage],
        reason: &str,
        group_name: Option<&str>,
    ) -> Result<Vec<Result<String>>> {
        self.ready().await?;
        if !self.config().dlq.enabled {
            return Err(StreamError::DlqDisabled {
                id: messages.first().map(|m| m.id.clone()).unwrap_or_default(),
            });
        }
        if let Some(name) = group_name {
            self.group(name).await?;
        }
        let mut results: Vec<Result<String>> = Vec::with_capacity(messages.len());
        let mut moved = Vec::new();
        let mut moves = Vec::new();
        let mut added = Vec::new();
        let mut adds = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            results.push(Ok(String::new()));
            match self.plan_dead_letter(message, reason, group_name).await {
                Ok(DeadPlan {
                    write: DeadWrite::Move(mv),
                    consumer,
                    fence,
                }) => {
                    moves.push(mv);
                    moved.push((i, consumer, fence.unwrap_or_default()));
                }
                Ok(DeadPlan {
                    write: DeadWrite::Add(add),
                    consumer,
                    ..
                }) => {
                    adds.push(add);
                    added.push((i, consumer));
                }
                Err(e) => results[i] = Err(e),
            }
        }
        if !adds.is_empty() {
            let ids = self.backend().add_batch(adds).await?;
            for ((i, consumer), id) in added.into_iter().zip(ids) {
                self.count_dead_letter(&messages[i], group_name, &consumer);
                results[i] = Ok(id.into_string());
            }
        }
        if !moves.is_empty() {
            let outcomes = self.backend().move_entries(moves).await?;
            for ((i, consumer, fence), outcome) in moved.into_iter().zip(outcomes) {
                let message = &messages[i];
                results[i] = outcome
                    .and_then(|o| {
                        moved_or_refused(o, message, group_name.unwrap_or_default(), fence)
                    })
                    .map(|id| {
                        self.count_dead_letter(message, group_name, &consumer);
                        id.map(EntryId::into_string).unwrap_or_default()
                    });
            }
        }
        Ok(results)
    }

    /// The write that dead-letters `message`: a fenced move out of the
    /// group that delivered it, or a plain add without a group.
    async fn plan_dead_letter(
        &self,
        message: &StreamMessage,
        reason: &str,
        group_name: Option<&str>,
    ) -> Result<DeadPlan> {
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
        let consumer: Option<String> = delivery
            .map(|d| d.consumer.to_string())
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
        let counted = consumer.clone().unwrap_or_default();
        let key = self.keys().dlq(&message.stream);
        let trim = self.dlq_trim(&key);
        let Some(group_name) = group_name else {
            let mut add = Add::new(key, fields);
            add.trim = trim;
            return Ok(DeadPlan {
                write: DeadWrite::Add(add),
                consumer: counted,
                fence: None,
            });
        };
        let (source, from_retry) = self.read_key(message, group_name);
        let fence = consumer.unwrap_or_else(|| self.consumer_id().to_owned());
        let target = MoveTarget::Stream { key, fields, trim };
        let mv = Move::new(
            source,
            group_name,
            EntryId::from(message.id.as_str()),
            target,
        )
        .fenced(fence.clone())
        .deleting_source(from_retry);
        Ok(DeadPlan {
            write: DeadWrite::Move(mv),
            consumer: counted,
            fence: Some(fence),
        })
    }

    /// The trims of a write to the dead-letter stream `key`: by length
    /// always (approximate, inline with the add), by age only when the last
    /// trim of that stream by age is [`AGE_TRIM_EVERY`] old (or a tenth of
    /// `max_retention`, when that is shorter). Both are approximate, so
    /// an entry may outlive its retention by that much.
    fn dlq_trim(&self, key: &str) -> Vec<Trim> {
        let dlq = &self.config().dlq;
        let mut trim = Vec::with_capacity(2);
        trim.push(Trim::MaxLen {
            len: dlq.max_len,
            approx: true,
        });
        let every = AGE_TRIM_EVERY.min(dlq.max_retention / 10);
        let now = Instant::now();
        let due = {
            let mut last = self
                .inner
                .dlq_trimmed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match last.get_mut(key) {
                Some(at) if now.saturating_duration_since(*at) < every => false,
                Some(at) => {
                    *at = now;
                    true
                }
                None => {
                    last.insert(key.to_owned(), now);
                    true
                }
            }
        };
        if due {
            trim.push(Trim::MaxAge {
                age: dlq.max_retention,
                approx: true,
            });
        }
        trim
    }

    fn count_dead_letter(&self, message: &StreamMessage, group: Option<&str>, consumer: &str) {
        self.count(
            Count::DeadLettered,
            Labels::delivery(&message.stream, group.unwrap_or_default(), consumer),
            1,
        );
    }
}

/// Refuses to settle a message through a group that did not deliver it
/// ([`StreamError::WrongGroup`]); a message never delivered passes.
pub(crate) fn check_group(message: &StreamMessage, group: &str) -> Result<()> {
    match &message.delivery {
        Some(d) if *d.group != *group => Err(StreamError::WrongGroup {
            id: message.id.clone(),
            delivered_to: d.group.to_string(),
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
