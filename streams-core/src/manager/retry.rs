//! Retries with exponential backoff, private to the group that retries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dlq::moved_or_refused;
use super::{Group, Manager};
use crate::backend::{EntryId, Feature, Fields, Move, MoveOutcome, MoveTarget, StreamBackend};
use crate::codec::{envelope_fields, field, payload_of, push_history, random_u64};
use crate::config::RetryPolicy;
use crate::error::{Result, StreamError};
use crate::message::{RetryOptions, StreamMessage};
use crate::observe::{Count, Labels};

/// The fields of the envelope, which a retry copy writes afresh.
pub(crate) const ENVELOPE: [&str; 8] = [
    field::DATA,
    field::TS,
    field::RETRY_COUNT,
    field::MID,
    field::ERROR,
    field::TRACEPARENT,
    field::REPLAYED_FROM,
    field::REPLAY_COUNT,
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
    /// The retry policy of `group`: its own, else the manager's.
    pub(crate) fn policy_of(&self, group: &super::Group) -> RetryPolicy {
        group
            .config
            .retry
            .unwrap_or_else(|| self.config().retry_policy())
    }

    /// Schedules a retry of a failed message.
    /// See [`StreamManager::retry_message`](crate::StreamManager::retry_message).
    ///
    /// # Errors
    /// [`StreamError::NotDelivered`], [`StreamError::NotOwner`], connection errors.
    pub async fn retry_message(&self, message: &StreamMessage) -> Result<bool> {
        self.retry_with(message, RetryOptions::new()).await
    }

    /// [`retry_message`](Self::retry_message), recording `error` as the
    /// message's last error in the retry copy.
    ///
    /// # Errors
    /// As [`retry_message`](Self::retry_message).
    pub async fn retry_with_error(&self, message: &StreamMessage, error: &str) -> Result<bool> {
        self.retry_with(message, RetryOptions::new().with_error(error))
            .await
    }

    /// The delay before retry number `retry_count + 1` under the manager's
    /// policy, with jitter (a group with a policy of its own uses that).
    pub fn retry_delay(&self, retry_count: u32) -> Duration {
        delay_with_jitter(&self.config().retry_policy(), retry_count)
    }

    /// [`retry_message`](Self::retry_message) with an error and a delay of
    /// the caller's choosing.
    /// See [`StreamManager::retry_with`](crate::StreamManager::retry_with).
    ///
    /// # Errors
    /// As [`retry_message`](Self::retry_message).
    #[tracing::instrument(level = "debug", skip_all, fields(stream = %message.stream, group = message.group(), consumer = message.delivery.as_ref().map(|d| &*d.consumer), id = %message.id))]
    pub async fn retry_with(&self, message: &StreamMessage, options: RetryOptions) -> Result<bool> {
        self.ready().await?;
        self.require(Feature::RetrySchedule, "retry_message")?;
        let Some((mv, plan)) = self.plan_retry(message, &options).await? else {
            return Ok(false);
        };
        let outcome = self.backend().move_entry(mv).await?;
        self.finish_retry(message, &plan, outcome)
    }

    /// Schedules a retry of each message, as
    /// [`retry_message`](Self::retry_message) does, in one round trip:
    /// the outcome of each, in order. One that is refused (not delivered,
    /// taken by another consumer) does not stop the others.
    /// See [`StreamManager::retry_many`](crate::StreamManager::retry_many).
    ///
    /// # Errors
    /// Connection errors that leave every outcome unknown (some retries
    /// may have been scheduled), [`StreamError::Closed`],
    /// [`StreamError::Unsupported`].
    #[tracing::instrument(level = "debug", skip_all, fields(count = messages.len()))]
    pub async fn retry_many(&self, messages: &[StreamMessage]) -> Result<Vec<Result<bool>>> {
        self.ready().await?;
        self.require(Feature::RetrySchedule, "retry_message")?;
        let options = RetryOptions::new();
        let mut results: Vec<Result<bool>> = Vec::with_capacity(messages.len());
        let mut planned = Vec::new();
        let mut moves = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            match self.plan_retry(message, &options).await {
                Ok(Some((mv, plan))) => {
                    moves.push(mv);
                    planned.push((i, plan));
                    results.push(Ok(true));
                }
                Ok(None) => results.push(Ok(false)),
                Err(e) => results.push(Err(e)),
            }
        }
        if moves.is_empty() {
            return Ok(results);
        }
        let outcomes = self.backend().move_entries(moves).await?;
        if outcomes.len() != planned.len() {
            return Err(StreamError::backend(
                self.backend().name(),
                std::io::Error::other("one outcome per move expected"),
            ));
        }
        for ((i, plan), outcome) in planned.into_iter().zip(outcomes) {
            results[i] = outcome.and_then(|o| self.finish_retry(&messages[i], &plan, o));
        }
        Ok(results)
    }

    /// The move that schedules a retry of `message`, or `None` when it is
    /// past its group's retry limit.
    async fn plan_retry(
        &self,
        message: &StreamMessage,
        options: &RetryOptions,
    ) -> Result<Option<(Move, RetryPlan)>> {
        let error = options.error.as_deref().or(message.error.as_deref());
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
        let group = self.group(&delivery.group).await?;
        let policy = self.policy_of(&group);
        if message.retry_count >= policy.limit {
            return Ok(None);
        }
        let Some(source) = group.sources.iter().find(|s| s.logical == message.stream) else {
            return Err(StreamError::config(format!(
                "stream `{}` is not consumed by group `{}`, so a retry could never be read",
                message.stream, group.config.name
            )));
        };
        let delay = options
            .delay
            .unwrap_or_else(|| delay_with_jitter(&policy, message.retry_count));
        let mut fields = envelope_fields(
            payload_of(message),
            &message.timestamp,
            message.retry_count.saturating_add(1),
            message.mid.as_deref(),
            error,
            message.traceparent.as_deref(),
        );
        push_history(
            &mut fields,
            message.replayed_from.as_deref(),
            message.replay_count,
        );
        fields.extend(extra_fields(message));
        let (read_key, from_retry) = self.read_key(message, &group.config.name);
        let target = MoveTarget::Schedule {
            key: source.retry.schedule.clone(),
            fields,
            delay,
        };
        let mv = Move::new(
            read_key,
            group.config.name.clone(),
            EntryId::from(message.id.as_str()),
            target,
        )
        .fenced(&*delivery.consumer)
        .deleting_source(from_retry);
        Ok(Some((mv, RetryPlan { group, delay })))
    }

    /// Accounts for a retry move that was made (or refused).
    fn finish_retry(
        &self,
        message: &StreamMessage,
        plan: &RetryPlan,
        outcome: MoveOutcome,
    ) -> Result<bool> {
        let group = &plan.group;
        let consumer = message
            .delivery
            .as_ref()
            .map_or_else(String::new, |d| d.consumer.to_string());
        moved_or_refused(outcome, message, &group.config.name, consumer)?;
        if let Some(due) = Instant::now().checked_add(plan.delay) {
            let mut st = group.lock_read();
            st.next_due = Some(st.next_due.map_or(due, |d| d.min(due)));
        }
        let consumer = message.delivery.as_ref().map_or("", |d| &*d.consumer);
        let labels = Labels::delivery(&message.stream, &group.config.name, consumer);
        self.count(Count::Retried, labels, 1);
        Ok(true)
    }
}

/// What a retry move needs once it is made.
struct RetryPlan {
    group: Arc<Group>,
    delay: Duration,
}

/// The backoff of `policy` for retry number `retry_count + 1`, lengthened
/// by up to `jitter` of itself.
pub(crate) fn delay_with_jitter(policy: &RetryPolicy, retry_count: u32) -> Duration {
    let base = policy.backoff(retry_count);
    if policy.jitter > 0.0 {
        // 53 random bits as a fraction in [0, 1).
        let unit = (random_u64() >> 11) as f64 / (1u64 << 53) as f64;
        base.saturating_add(base.mul_f64(policy.jitter * unit))
    } else {
        base
    }
}
