//! One message: decode its payload, run the handler (with the hard timeout,
//! catching panics), and settle the message by the outcome.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use std::time::Instant;

use futures::FutureExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::acks::AckRequest;
use super::engine::Ctx;
use super::{Handler, Job, Outcome, Settled};
use crate::api::StreamManager;
use crate::error::StreamError;
use crate::message::{RetryOptions, StreamMessage};
use crate::observe;

/// The dead-letter reason of a payload that does not fit the handler's type.
pub(crate) const PAYLOAD_MISMATCH: &str = "payload does not fit the handler's type";

/// Handles one message to the end: settled, or left pending (its handler
/// overran the grace period, or settling failed).
pub(super) async fn handle<M, T, H>(
    ctx: &Ctx<M, T, H>,
    message: StreamMessage,
    acks: &mpsc::UnboundedSender<AckRequest>,
) where
    M: StreamManager + Clone + 'static,
    T: serde::de::DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    let delivery = message.delivery.as_ref();
    let span = tracing::info_span!(
        "handle",
        stream = %message.stream,
        group = %ctx.group,
        consumer = delivery.map_or("", |d| &*d.consumer),
        id = %message.id,
        retry_count = message.retry_count,
        deliveries = delivery.map_or(0, |d| d.deliveries),
    );
    // The sender's trace continues here (feature `otel`); this must happen
    // before the span is first entered.
    observe::set_remote_parent(&span, message.traceparent.as_deref());
    run(ctx, message, acks).instrument(span).await;
}

async fn run<M, T, H>(
    ctx: &Ctx<M, T, H>,
    message: StreamMessage,
    acks: &mpsc::UnboundedSender<AckRequest>,
) where
    M: StreamManager + Clone + 'static,
    T: serde::de::DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    if message.is_malformed() {
        let why = message.error.clone().unwrap_or_default();
        dead_letter(ctx, &message, &format!("malformed entry: {why}")).await;
        return;
    }
    let data: T = match payload_as(&message) {
        Ok(data) => data,
        Err(e) => {
            tracing::warn!(error = %e, "payload does not fit the handler's type; dead-lettering it");
            dead_letter(ctx, &message, &format!("{PAYLOAD_MISMATCH}: {e}")).await;
            return;
        }
    };
    let job = Job {
        data,
        message: message.clone(),
    };
    let started = Instant::now();
    let call = AssertUnwindSafe(ctx.handler.call(job)).catch_unwind();
    let limit = ctx.options.hard_timeout;
    let timed = async {
        match limit {
            Some(limit) => tokio::time::timeout(limit, call).await.ok(),
            None => Some(call.await),
        }
    };
    let result = tokio::select! {
        r = timed => r,
        () = ctx.abandon.cancelled() => {
            tracing::warn!("still running when the grace period ended; it stays pending");
            ctx.overran(&message);
            ctx.settled(&message, Settled::Overran);
            return;
        }
    };
    ctx.counts.add_processed(1);
    let (outcome, label) = match result {
        None => {
            ctx.counts.add_timed_out(1);
            let limit = limit.map(humantime::format_duration);
            let why = format!(
                "handler timed out after {}",
                limit.map_or_else(String::new, |l| l.to_string())
            );
            (Err(why), "timed_out")
        }
        Some(Err(panic)) => (
            Err(format!("handler panicked: {}", panic_text(&*panic))),
            "panicked",
        ),
        Some(Ok(Ok(outcome))) => {
            let label = match &outcome {
                Outcome::Ack => "ack",
                Outcome::Retry { .. } => "retry",
                Outcome::DeadLetter { .. } => "dead_letter",
            };
            (Ok(outcome), label)
        }
        Some(Ok(Err(error))) => (Err(error), "failed"),
    };
    let consumer = message.delivery.as_ref().map_or("", |d| &*d.consumer);
    observe::record_handler(
        &message.stream,
        &ctx.group,
        consumer,
        label,
        started.elapsed(),
    );
    match outcome {
        Ok(Outcome::Ack) => {
            if let Err(refused) = acks.send(AckRequest::Ack(Box::new(message))) {
                // The ack task is gone: the message stays pending.
                ctx.counts.add_error();
                if let AckRequest::Ack(message) = refused.0 {
                    ctx.settled(&message, Settled::Failed);
                }
            }
        }
        Ok(Outcome::Retry { delay, reason }) => retry(ctx, &message, reason, delay).await,
        Ok(Outcome::DeadLetter { reason }) => dead_letter(ctx, &message, &reason).await,
        Err(error) => {
            tracing::info!(%error, "handler failed");
            retry(ctx, &message, Some(error), None).await;
        }
    }
}

/// The payload as `T`: read from the bytes it was decoded from (no copy of
/// `data`), or from `data` when that fails (a payload that repeats a name,
/// which `data` keeps once, say), so that what fits `data` fits.
fn payload_as<T: serde::de::DeserializeOwned>(message: &StreamMessage) -> serde_json::Result<T> {
    if let Some(bytes) = &message.payload {
        if let Ok(data) = serde_json::from_slice(bytes) {
            return Ok(data);
        }
    }
    serde_json::from_value(Value::Object(message.data.clone()))
}

fn panic_text(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Retries the message; past the limit, dead-letters it with the error.
async fn retry<M, T, H>(
    ctx: &Ctx<M, T, H>,
    message: &StreamMessage,
    error: Option<String>,
    delay: Option<std::time::Duration>,
) where
    M: StreamManager + Clone + 'static,
{
    let mut options = RetryOptions::new();
    options.error.clone_from(&error);
    options.delay = delay;
    let how = match ctx.manager.retry_with(message, options).await {
        Ok(true) => {
            ctx.counts.add_retried(1);
            Settled::Retried
        }
        Ok(false) => {
            let last = error.or_else(|| message.error.clone());
            let reason = match last {
                Some(e) => format!("retry limit reached: {e}"),
                None => "retry limit reached".to_owned(),
            };
            dead_letter(ctx, message, &reason).await;
            return;
        }
        Err(e) => settle_failed(ctx, message, "retrying", &e),
    };
    ctx.settled(message, how);
}

async fn dead_letter<M, T, H>(ctx: &Ctx<M, T, H>, message: &StreamMessage, reason: &str)
where
    M: StreamManager + Clone + 'static,
{
    let how = match ctx
        .manager
        .send_to_dlq(message, reason, Some(&ctx.group))
        .await
    {
        Ok(_) => {
            ctx.counts.add_dead_lettered(1);
            Settled::DeadLettered
        }
        Err(e) => settle_failed(ctx, message, "dead-lettering", &e),
    };
    ctx.settled(message, how);
}

fn settle_failed<M, T, H>(
    ctx: &Ctx<M, T, H>,
    message: &StreamMessage,
    what: &str,
    e: &StreamError,
) -> Settled {
    if let StreamError::NotOwner { owner, .. } = e {
        ctx.counts.add_lost(1);
        tracing::warn!(id = %message.id, ?owner, "the message was taken by another consumer meanwhile; it settles it");
        Settled::Taken
    } else {
        ctx.counts.add_error();
        tracing::error!(id = %message.id, error = %e, "{what} failed; the message stays pending and will be delivered again");
        Settled::Failed
    }
}
