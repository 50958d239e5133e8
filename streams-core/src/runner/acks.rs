//! Acknowledgements, coalesced: a handler's ack waits at most `ack_delay`
//! to be sent with others, in batches of at most `ack_batch`, unless a
//! flush is asked for.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Settled;
use super::engine::Ctx;
use crate::api::StreamManager;
use crate::message::StreamMessage;
use crate::observe;

/// Attempts at sending one batch before its messages are left pending
/// (they are redelivered or claimed later: at-least-once).
const ATTEMPTS: u32 = 3;

/// What the ack task is asked to do.
#[derive(Debug)]
pub(super) enum AckRequest {
    /// Acknowledge this message, with others.
    Ack(Box<StreamMessage>),
    /// Send every acknowledgement asked for so far now, then answer.
    Flush(oneshot::Sender<()>),
}

/// Makes the ack task send every acknowledgement asked for so far, and
/// waits until it has (or has given up on them).
pub(super) async fn flush_now(acks: &mpsc::UnboundedSender<AckRequest>) {
    let (done, flushed) = oneshot::channel();
    if acks.send(AckRequest::Flush(done)).is_ok() {
        let _ = flushed.await;
    }
}

/// Starts the task that sends acknowledgements; it flushes what it holds
/// and ends when every sender is dropped.
pub(super) fn spawn<M, T, H>(
    ctx: Arc<Ctx<M, T, H>>,
    mut rx: mpsc::UnboundedReceiver<AckRequest>,
) -> JoinHandle<()>
where
    M: StreamManager + Clone + 'static,
    T: Send + 'static,
    H: Send + Sync + 'static,
{
    tokio::spawn(async move {
        let batch = ctx.options.ack_batch.max(1);
        let mut buf = Vec::with_capacity(batch);
        while let Some(first) = rx.recv().await {
            let mut waiting = None;
            match first {
                AckRequest::Ack(m) => buf.push(*m),
                AckRequest::Flush(done) => waiting = Some(done),
            }
            let deadline = Instant::now() + ctx.options.ack_delay;
            while waiting.is_none() && buf.len() < batch {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some(AckRequest::Ack(m)) => buf.push(*m),
                        Some(AckRequest::Flush(done)) => waiting = Some(done),
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            flush(&ctx, &mut buf).await;
            if let Some(done) = waiting {
                let _ = done.send(());
            }
        }
        flush(&ctx, &mut buf).await;
    })
}

async fn flush<M, T, H>(ctx: &Ctx<M, T, H>, buf: &mut Vec<StreamMessage>)
where
    M: StreamManager + Clone + 'static,
{
    if buf.is_empty() {
        return;
    }
    let mut wait = Duration::from_millis(50);
    for attempt in 1..=ATTEMPTS {
        match ctx.manager.acknowledge_many(buf, &ctx.group).await {
            Ok(acked) => {
                let asked = buf.len() as u64;
                ctx.counts.add_acked(acked);
                // Not pending any more: another consumer settled them.
                ctx.counts.add_lost(asked.saturating_sub(acked));
                // A short count cannot say which of the batch another
                // consumer settled first.
                let how = if acked >= asked {
                    Settled::Acked
                } else {
                    Settled::AckUnconfirmed
                };
                for m in buf.iter() {
                    let consumer = m.delivery.as_ref().map_or("", |d| &*d.consumer);
                    observe::record_end_to_end(m, &ctx.group, consumer);
                    ctx.settled(m, how);
                }
                buf.clear();
                return;
            }
            Err(e) if attempt < ATTEMPTS && e.is_retryable() => {
                tracing::warn!(group = %ctx.group, error = %e, attempt, "acknowledging failed; trying again");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => {
                ctx.counts.add_error();
                tracing::error!(
                    group = %ctx.group, error = %e, messages = buf.len(),
                    "acknowledging failed; unless the server applied it and only the reply \
                     was lost, the messages stay pending and will be delivered again"
                );
                for m in buf.iter() {
                    ctx.settled(m, Settled::AckFailed);
                }
                buf.clear();
                return;
            }
        }
    }
}
