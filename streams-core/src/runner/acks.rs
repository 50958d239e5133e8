//! Acknowledgements, coalesced: a handler's ack waits at most `ack_delay`
//! to be sent with others, in batches of at most `ack_batch`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::engine::Ctx;
use crate::api::StreamManager;
use crate::message::StreamMessage;
use crate::observe;

/// Attempts at sending one batch before its messages are left pending
/// (they are redelivered or claimed later: at-least-once).
const ATTEMPTS: u32 = 3;

/// Starts the task that sends acknowledgements; it flushes what it holds
/// and ends when every sender is dropped.
pub(super) fn spawn<M, T, H>(
    ctx: Arc<Ctx<M, T, H>>,
    mut rx: mpsc::UnboundedReceiver<StreamMessage>,
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
            buf.push(first);
            let deadline = Instant::now() + ctx.options.ack_delay;
            while buf.len() < batch {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some(m) => buf.push(m),
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            flush(&ctx, &mut buf).await;
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
                for m in buf.iter() {
                    let consumer = m.delivery.as_ref().map_or("", |d| d.consumer.as_str());
                    observe::record_end_to_end(m, &ctx.group, consumer);
                    ctx.settled(m);
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
                    "acknowledging failed; the messages stay pending and will be delivered again"
                );
                for m in buf.iter() {
                    ctx.settled(m);
                }
                buf.clear();
                return;
            }
        }
    }
}
