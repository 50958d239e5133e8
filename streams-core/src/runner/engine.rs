//! The runner's loop: read no more than free handler slots, start each
//! message's handler, run the tickers, and shut down in order.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{ConsumeOptions, ConsumeSummary, Handler, Observer, Settled, Settlement, acks, handle};
use crate::api::StreamManager;
use crate::error::{Result, StreamError};
use crate::message::{Delivery, StreamMessage};
use crate::observe;

/// Shortest lease renewal and claim intervals, whatever `claim_idle` is.
const MIN_TICK: Duration = Duration::from_millis(50);

/// Shortest read wait: a zero `poll` would spin while the group is idle.
const MIN_POLL: Duration = Duration::from_millis(10);

/// Longest wait between attempts after a failed read.
const MAX_READ_BACKOFF: Duration = Duration::from_secs(5);

/// Longest time settlements may take once handlers were told to stop.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// The running totals behind [`ConsumeSummary`].
#[derive(Debug, Default)]
pub(super) struct Counts {
    processed: AtomicU64,
    acked: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    claimed: AtomicU64,
    handed_back: AtomicU64,
    timed_out: AtomicU64,
    lost: AtomicU64,
    errors: AtomicU64,
}

macro_rules! counters {
    ($($add:ident => $field:ident),* $(,)?) => {
        impl Counts {
            $(
                pub(super) fn $add(&self, n: u64) {
                    self.$field.fetch_add(n, Ordering::Relaxed);
                }
            )*
        }
    };
}

counters! {
    add_processed => processed,
    add_acked => acked,
    add_retried => retried,
    add_dead_lettered => dead_lettered,
    add_claimed => claimed,
    add_handed_back => handed_back,
    add_timed_out => timed_out,
    add_lost => lost,
    add_errors => errors,
}

impl Counts {
    pub(super) fn add_error(&self) {
        self.add_errors(1);
    }

    fn summary(&self, overran: Vec<String>, trimmed: u64) -> ConsumeSummary {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConsumeSummary {
            processed: get(&self.processed),
            acked: get(&self.acked),
            retried: get(&self.retried),
            dead_lettered: get(&self.dead_lettered),
            claimed: get(&self.claimed),
            handed_back: get(&self.handed_back),
            timed_out: get(&self.timed_out),
            lost: get(&self.lost),
            errors: get(&self.errors),
            trimmed,
            overran,
        }
    }
}

/// A fetched message, by where it was read.
type HeldKey = (String, String, bool);

fn held_key(m: &StreamMessage) -> HeldKey {
    let from_retry = m.delivery.as_ref().is_some_and(|d| d.from_retry);
    (m.stream.clone(), m.id.clone(), from_retry)
}

/// What every part of a run shares.
pub(super) struct Ctx<M, T, H> {
    pub(super) manager: M,
    pub(super) group: String,
    pub(super) handler: Arc<H>,
    pub(super) options: ConsumeOptions,
    pub(super) counts: Counts,
    /// Fetched and not settled yet: their leases are renewed. Each is
    /// kept as a message without its payload.
    held: Mutex<HashMap<HeldKey, StreamMessage>>,
    /// Claimed by the ticker, not started yet.
    queue: Mutex<VecDeque<StreamMessage>>,
    /// Cancelled when the grace period ends: running handlers stop.
    pub(super) abandon: CancellationToken,
    /// `stream/id` of handlers stopped by the end of the grace period.
    overran: Mutex<Vec<String>>,
    /// Told how each message ended, if the caller asked.
    observer: Option<Observer>,
    _payload: PhantomData<fn() -> T>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<M, T, H> Ctx<M, T, H> {
    /// Holds the leases of `messages`: what renewing a lease needs (the
    /// stream, the id and the delivery), not the payload.
    fn hold(&self, messages: &[StreamMessage]) {
        let mut held = lock(&self.held);
        held.reserve(messages.len());
        for m in messages {
            let mut lease = StreamMessage::blank(&m.stream, m.id.clone());
            lease.delivery.clone_from(&m.delivery);
            held.insert(held_key(m), lease);
        }
    }

    /// The message is settled (or given up on): its lease is no longer
    /// renewed, and the observer hears how it ended.
    pub(super) fn settled(&self, m: &StreamMessage, how: Settled) {
        lock(&self.held).remove(&held_key(m));
        if let Some(observer) = &self.observer {
            observer(&Settlement {
                message: m,
                group: &self.group,
                how,
            });
        }
    }

    pub(super) fn overran(&self, m: &StreamMessage) {
        lock(&self.overran).push(format!("{}/{}", m.stream, m.id));
    }

    fn held(&self) -> Vec<StreamMessage> {
        lock(&self.held).values().cloned().collect()
    }
}

/// One run of a handler over a group.
pub(crate) struct Run<M, T, H> {
    ctx: Arc<Ctx<M, T, H>>,
    shutdown: CancellationToken,
}

impl<M, T, H> Run<M, T, H>
where
    M: StreamManager + Clone + 'static,
    T: serde::de::DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    pub(crate) fn new(
        manager: M,
        group: String,
        handler: Arc<H>,
        options: ConsumeOptions,
        shutdown: CancellationToken,
        observer: Option<Observer>,
    ) -> Self {
        Self {
            ctx: Arc::new(Ctx {
                manager,
                group,
                handler,
                options,
                counts: Counts::default(),
                held: Mutex::default(),
                queue: Mutex::default(),
                abandon: CancellationToken::new(),
                overran: Mutex::default(),
                observer,
                _payload: PhantomData,
            }),
            shutdown,
        }
    }

    pub(crate) async fn run(self) -> Result<ConsumeSummary> {
        let ctx = self.ctx;
        let config = ctx.manager.group_config(&ctx.group).await?;
        let claim_idle = config.claim_idle;
        let concurrency = ctx.options.concurrency.max(1);
        tracing::info!(group = %ctx.group, concurrency, "consuming");
        // Reads and claims count what they found trimmed while pending.
        let trimmed_before = ctx.manager.counters().pending_deleted;

        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let acks = acks::spawn(Arc::clone(&ctx), ack_rx);
        let stop_tickers = CancellationToken::new();
        let lease_every = ctx
            .options
            .lease_interval
            .unwrap_or(claim_idle / 3)
            .max(MIN_TICK);
        let leases = tokio::spawn(renew_leases(
            Arc::clone(&ctx),
            lease_every,
            stop_tickers.clone(),
        ));
        let claim_every = ctx
            .options
            .claim_interval
            .unwrap_or(claim_idle / 2)
            .max(MIN_TICK);
        let stop_chores = CancellationToken::new();
        let chores = tokio::spawn(chores(
            Arc::clone(&ctx),
            claim_every,
            claim_idle,
            concurrency,
            stop_chores.clone(),
        ));

        // If this future is dropped midway (its task aborted, a `select!`
        // that chose another branch), the tickers stop with it: leases kept
        // alive by a runner that is gone would hold its messages forever.
        // Handlers stop with the `JoinSet`, and the ack task ends once the
        // sender is dropped.
        let _stop_on_drop = (
            stop_tickers.clone().drop_guard(),
            stop_chores.clone().drop_guard(),
        );

        let slots = Arc::new(Semaphore::new(concurrency));
        let mut handlers = JoinSet::new();
        let fatal = read_loop(
            &ctx,
            &self.shutdown,
            &slots,
            concurrency,
            &mut handlers,
            &ack_tx,
        )
        .await;

        // Shutdown: nothing new starts or is claimed; what was claimed but
        // not started is handed back; running handlers get the grace period
        // (their leases are still renewed).
        stop_chores.cancel();
        if chores.await.is_err() {
            ctx.counts.add_error();
        }
        let queued: Vec<StreamMessage> = lock(&ctx.queue).drain(..).collect();
        hand_back(&ctx, queued).await;
        let drained = tokio::time::timeout(ctx.options.grace, async {
            while handlers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            ctx.abandon.cancel();
            let settled = tokio::time::timeout(SETTLE_LIMIT, async {
                while handlers.join_next().await.is_some() {}
            })
            .await;
            if settled.is_err() {
                handlers.abort_all();
                while handlers.join_next().await.is_some() {}
            }
        }
        drop(ack_tx);
        if acks.await.is_err() {
            ctx.counts.add_error();
        }
        stop_tickers.cancel();
        if leases.await.is_err() {
            ctx.counts.add_error();
        }

        let overran = std::mem::take(&mut *lock(&ctx.overran));
        let trimmed = ctx
            .manager
            .counters()
            .pending_deleted
            .saturating_sub(trimmed_before);
        let summary = ctx.counts.summary(overran, trimmed);
        tracing::info!(group = %ctx.group, ?summary, "stopped consuming");
        match fatal {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }
}

/// Reads and starts handlers until shutdown; returns the error that ended
/// it, if one did.
async fn read_loop<M, T, H>(
    ctx: &Arc<Ctx<M, T, H>>,
    shutdown: &CancellationToken,
    slots: &Arc<Semaphore>,
    concurrency: usize,
    handlers: &mut JoinSet<()>,
    acks: &mpsc::UnboundedSender<acks::AckRequest>,
) -> Option<StreamError>
where
    M: StreamManager + Clone + 'static,
    T: serde::de::DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        while handlers.try_join_next().is_some() {}
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            permit = Arc::clone(slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return None,
            },
        };
        let free = slots.available_permits() + 1;
        let mut batch: Vec<StreamMessage> = {
            let mut queue = lock(&ctx.queue);
            let n = free.min(queue.len());
            queue.drain(..n).collect()
        };
        if batch.is_empty() {
            match ctx
                .manager
                .read_messages(&ctx.group, Some(free), Some(ctx.options.poll.max(MIN_POLL)))
                .await
            {
                Ok(read) => {
                    backoff = Duration::from_millis(100);
                    batch = read;
                }
                Err(e) if is_fatal(&e) => {
                    tracing::error!(group = %ctx.group, error = %e, "cannot go on consuming");
                    return Some(e);
                }
                Err(e) => {
                    ctx.counts.add_error();
                    tracing::warn!(group = %ctx.group, error = %e, retry_in = ?backoff, "reading failed");
                    drop(first);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => return None,
                    }
                    backoff = (backoff * 2).min(MAX_READ_BACKOFF);
                    continue;
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        ctx.hold(&batch);
        let mut first = Some(first);
        let mut rest = batch.into_iter();
        while let Some(message) = rest.next() {
            let permit = if is_suspect(&message) {
                // It may have crashed its last consumer: it runs alone, so
                // a crash on it cannot count against other messages.
                drop(first.take());
                let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
                let alone = tokio::select! {
                    biased;
                    p = Arc::clone(slots).acquire_many_owned(all) => p.ok(),
                    () = shutdown.cancelled() => None,
                };
                // The acks of the handlers it waited for are sent first:
                // if it crashes the process, they must not be lost with
                // it (their messages would be redelivered and, crash after
                // crash, reach the poison limit along with the culprit).
                if alone.is_some() {
                    acks::flush_now(acks).await;
                }
                alone
            } else if let Some(p) = first.take() {
                Some(p)
            } else {
                // Fetched messages have their slots unless a suspect ran
                // alone: start them rather than hand them back.
                tokio::select! {
                    biased;
                    p = Arc::clone(slots).acquire_owned() => p.ok(),
                    () = shutdown.cancelled() => None,
                }
            };
            let Some(permit) = permit else {
                // Shutting down before it started: hand it and the rest back.
                let unstarted: Vec<StreamMessage> = std::iter::once(message).chain(rest).collect();
                hand_back(ctx, unstarted).await;
                return None;
            };
            start(ctx, handlers, message, permit, acks);
        }
    }
}

fn start<M, T, H>(
    ctx: &Arc<Ctx<M, T, H>>,
    handlers: &mut JoinSet<()>,
    message: StreamMessage,
    permit: OwnedSemaphorePermit,
    acks: &mpsc::UnboundedSender<acks::AckRequest>,
) where
    M: StreamManager + Clone + 'static,
    T: serde::de::DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    let ctx = Arc::clone(ctx);
    let acks = acks.clone();
    handlers.spawn(async move {
        handle::handle(&ctx, message, &acks).await;
        drop(permit);
    });
}

/// A message whose last delivery ended unsettled.
fn is_suspect(m: &StreamMessage) -> bool {
    m.delivery.as_ref().is_some_and(Delivery::is_redelivery)
}

/// Errors after which reading again cannot help.
fn is_fatal(e: &StreamError) -> bool {
    matches!(
        e,
        StreamError::GroupNotFound { .. }
            | StreamError::Closed
            | StreamError::InvalidName { .. }
            | StreamError::Config { .. }
            | StreamError::Unsupported { .. }
    )
}

/// Hands back messages that were fetched but never started.
async fn hand_back<M, T, H>(ctx: &Ctx<M, T, H>, messages: Vec<StreamMessage>)
where
    M: StreamManager + Clone + 'static,
{
    if messages.is_empty() {
        return;
    }
    let how = match ctx.manager.release(&messages).await {
        Ok(n) => {
            ctx.counts.add_handed_back(n);
            Settled::HandedBack
        }
        Err(e) => {
            ctx.counts.add_error();
            tracing::warn!(group = %ctx.group, error = %e, "handing back unstarted messages failed; they will be claimed");
            Settled::Failed
        }
    };
    for m in &messages {
        ctx.settled(m, how);
    }
}

/// Renews the leases of every fetched message not settled yet.
async fn renew_leases<M, T, H>(ctx: Arc<Ctx<M, T, H>>, every: Duration, stop: CancellationToken)
where
    M: StreamManager + Clone + 'static,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let held = ctx.held();
        if held.is_empty() {
            continue;
        }
        if let Err(e) = ctx.manager.touch_many(&held).await {
            ctx.counts.add_error();
            tracing::warn!(group = %ctx.group, error = %e, "renewing leases failed");
        }
    }
}

/// Claims abandoned work, promotes due retries, prunes stale consumers,
/// refreshes the group's gauges.
async fn chores<M, T, H>(
    ctx: Arc<Ctx<M, T, H>>,
    claim_every: Duration,
    claim_idle: Duration,
    concurrency: usize,
    stop: CancellationToken,
) where
    M: StreamManager + Clone + 'static,
{
    let ticker = |every: Duration| {
        let mut t = tokio::time::interval(every.max(MIN_TICK));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    };
    let mut claim = ticker(claim_every);
    let mut promote = ticker(ctx.options.promote_interval);
    let mut prune = ticker(ctx.options.prune_interval);
    prune.reset();
    let mut gauges = ticker(ctx.options.gauge_interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = claim.tick() => claim_idle_work(&ctx, claim_idle, concurrency, &stop).await,
            _ = promote.tick() => {
                if let Err(e) = ctx.manager.promote_due_retries(Some(&ctx.group)).await {
                    ctx.counts.add_error();
                    tracing::warn!(group = %ctx.group, error = %e, "promoting due retries failed");
                }
            }
            _ = gauges.tick() => {
                if let Err(e) = observe::record_group_gauges(&ctx.manager, &ctx.group).await {
                    ctx.counts.add_error();
                    tracing::warn!(group = %ctx.group, error = %e, "reading the group's gauges failed");
                }
            }
            _ = prune.tick() => {
                match ctx.manager.prune_consumers(&ctx.group, ctx.options.prune_idle).await {
                    Ok(report) if !report.removed.is_empty() => {
                        tracing::info!(group = %ctx.group, removed = ?report.removed, "removed stale consumers");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        ctx.counts.add_error();
                        tracing::warn!(group = %ctx.group, error = %e, "pruning consumers failed");
                    }
                }
            }
        }
    }
}

/// Claims until nothing is left or enough is queued for the free slots.
async fn claim_idle_work<M, T, H>(
    ctx: &Ctx<M, T, H>,
    idle: Duration,
    concurrency: usize,
    stop: &CancellationToken,
) where
    M: StreamManager + Clone + 'static,
{
    while !stop.is_cancelled() && lock(&ctx.queue).len() < concurrency {
        match ctx
            .manager
            .claim_pending_messages(&ctx.group, Some(idle))
            .await
        {
            Ok(claimed) if claimed.is_empty() => return,
            Ok(claimed) => {
                ctx.counts.add_claimed(claimed.len() as u64);
                ctx.hold(&claimed);
                lock(&ctx.queue).extend(claimed);
            }
            Err(StreamError::Unsupported { .. }) => return,
            Err(e) => {
                ctx.counts.add_error();
                tracing::warn!(group = %ctx.group, error = %e, "claiming idle work failed");
                return;
            }
        }
    }
}
