//! Poison messages are counted in handler attempts: hand-backs never count,
//! and the batch-mates of a message that crashes its consumer never reach
//! the dead-letter queue for it.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use streams_core::{DlqConfig, MAX_DELIVERIES_EXCEEDED, Manager, StreamError, StreamMessage};

use crate::support::{
    Fault, Meddle, TestContext, TestManager, ids, pending_all, read_n, read_now, send_n,
};

/// Messages handed back unhandled (`release`, a dropped subscription) are
/// never poison, however often it happens: the hand-back gives its delivery
/// back, so a worker that reads more than it starts loses nothing to the
/// dead-letter queue.
pub async fn released_messages_are_never_poison(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 5).await;
    let b = ctx.second_manager("b").await;
    let limit = a.config().dlq.retry_limit;
    let mut held = read_n(&a, "g", 5, Duration::from_secs(5)).await;
    // Far more rounds than the retry limit allows deliveries.
    for round in 0..(limit + 4) {
        let (giver, taker) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert_eq!(giver.release(&held).await.unwrap(), 5, "round {round}");
        held = taker
            .claim_pending_messages("g", Some(Duration::from_secs(3600)))
            .await
            .unwrap();
        assert_eq!(ids(&held), sent, "round {round}: nothing went to the DLQ");
        assert!(
            held.iter()
                .all(|m| m.delivery.as_ref().unwrap().deliveries == 1),
            "round {round}: a hand-back is not a delivery"
        );
    }
    assert_eq!(a.dead_letters(10).await.unwrap().len(), 0);
    let last = if (limit + 4) % 2 == 0 { &a } else { &b };
    assert_eq!(last.acknowledge_many(&held, "g").await.unwrap(), 5);
    let stats_a = a.get_stats().await.unwrap();
    let stats_b = b.get_stats().await.unwrap();
    assert_eq!(stats_a.poison_messages + stats_b.poison_messages, 0);
    assert!(stats_a.messages_handed_back > 0 && stats_b.messages_handed_back > 0);
}

/// One "process": a manager with consumer id `worker`, as a restarted agent
/// would build it.
async fn worker(ctx: &TestContext) -> TestManager {
    ctx.second_manager_with(
        ctx.config("worker")
            .with_dlq(DlqConfig::default().with_retry_limit(2)),
    )
    .await
}

/// A consumer that crashes on one message takes none of its batch-mates to
/// the dead-letter queue: after a restart its own unfinished work comes back
/// one message per read, so the crash loop is pinned on its culprit. With
/// retry limit 2 the culprit is handed out three times in all and then
/// dead-lettered; every other message is handled exactly once more.
pub async fn crash_loop_isolates_the_culprit(ctx: &TestContext) {
    let setup = ctx.manager("setup");
    ctx.create_group(&setup, "g", &["s"]).await;
    let items = ["good0", "good1", "good2", "poison", "good3", "good4"]
        .map(|name| json!({ "name": name }))
        .to_vec();
    setup.send_batch("s", items, None).await.unwrap();

    let name = |m: &StreamMessage| m.data["name"].as_str().unwrap().to_owned();
    let mut handled = BTreeSet::new();
    let mut attempts_on_poison = 0;

    // The first process reads the whole batch and works through it in order.
    let first = worker(ctx).await;
    let batch = read_n(&first, "g", 6, Duration::from_secs(5)).await;
    for msg in &batch {
        if name(msg) == "poison" {
            attempts_on_poison += 1;
            break; // The process crashes: nothing after this is acked.
        }
        assert!(first.acknowledge(msg, "g").await.unwrap());
        handled.insert(name(msg));
    }
    drop(first);

    // Restarts: each process reads its own backlog one message at a time.
    for restart in 0..10 {
        let process = worker(ctx).await;
        let mut crashed = false;
        loop {
            let got = process
                .read_messages("g", Some(10), Some(Duration::from_millis(50)))
                .await
                .unwrap();
            if got.is_empty() {
                break;
            }
            assert_eq!(
                got.len(),
                1,
                "restart {restart}: backlog messages come alone"
            );
            let msg = &got[0];
            if name(msg) == "poison" {
                attempts_on_poison += 1;
                crashed = true;
                break;
            }
            assert!(
                handled.insert(name(msg)),
                "{} handled twice after it was acked",
                name(msg)
            );
            assert!(process.acknowledge(msg, "g").await.unwrap());
        }
        if !crashed {
            break;
        }
    }

    assert_eq!(
        attempts_on_poison, 3,
        "retry limit 2: three attempts in all"
    );
    let all: BTreeSet<String> = ["good0", "good1", "good2", "good3", "good4"]
        .map(str::to_owned)
        .into();
    assert_eq!(handled, all, "every batch-mate was handled");
    let dead = setup.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "only the culprit is dead-lettered: {dead:?}");
    assert_eq!(dead[0].data["name"], "poison");
    let provenance = dead[0].dead_letter.as_ref().unwrap();
    assert_eq!(provenance.reason, MAX_DELIVERIES_EXCEEDED);
    assert_eq!(
        provenance.deliveries,
        Some(3),
        "handed to a handler three times"
    );
    assert!(
        pending_all(&ctx.backend(), &ctx.key("s"), "g")
            .await
            .is_empty()
    );
}

/// A message in flight when another message crashed its consumer gets
/// another attempt, alone, even with retry limit 0: a single crash of a copy
/// never counts against it, because it may have been another message's; a
/// second crash does.
pub async fn one_crash_never_dead_letters(ctx: &TestContext) {
    let strict = |consumer: &str| {
        ctx.config(consumer)
            .with_dlq(DlqConfig::default().with_retry_limit(0))
    };
    let a = ctx.manager_with(strict("a"));
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 3).await;
    read_n(&a, "g", 3, Duration::from_secs(5)).await;
    // `a` crashes with all three in flight; `b` claims the first, alone,
    // and crashes on it too.
    let b = ctx.second_manager_with(strict("b")).await;
    let first = b
        .claim_pending_messages("g", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(ids(&first), sent[..1]);
    assert!(first[0].delivery.as_ref().unwrap().is_redelivery());
    // `c` claims: the first crashed two consumers and is dead-lettered; the
    // others crashed one (maybe not even themselves) and come, one by one.
    let c = ctx.second_manager_with(strict("c")).await;
    let mut rest = Vec::new();
    loop {
        let claimed = c
            .claim_pending_messages("g", Some(Duration::ZERO))
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        assert!(c.acknowledge(&claimed[0], "g").await.unwrap());
        rest.extend(claimed);
    }
    assert_eq!(ids(&rest), sent[1..], "every batch-mate gets its attempt");
    let dead = c.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].dead_letter.as_ref().unwrap().origin_id, sent[0]);
    assert!(read_now(&c, "g").await.is_empty());
}

/// A poison message that cannot be written to the dead-letter queue (the
/// server refuses writes, say) stays pending, is not handed to a handler,
/// and is counted; the other messages of the claim go on.
pub async fn poison_that_cannot_be_dead_lettered_stays_pending(ctx: &TestContext) {
    let config = |c: &str| {
        ctx.config(c)
            .with_dlq(DlqConfig::default().with_retry_limit(0))
    };
    let a = ctx.manager_with(config("a"));
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 2).await;
    read_n(&a, "g", 2, Duration::from_secs(5)).await;
    // `a` crashed on the first; `b` claims it and crashes too.
    let b = ctx.second_manager_with(config("b")).await;
    let first = b
        .claim_pending_messages("g", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(ids(&first), sent[..1]);
    // `c` cannot write to the dead-letter queue.
    let c = Manager::new(
        Meddle::wrap(
            ctx.second_backend().await,
            "move_entry",
            Fault::Fail(|| StreamError::Backend {
                backend: "test",
                source: "OOM command not allowed when used memory > 'maxmemory'".into(),
            }),
        ),
        config("c"),
    )
    .unwrap();
    let claimed = c
        .claim_pending_messages("g", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        ids(&claimed),
        sent[1..],
        "the poison is held back, the other goes on"
    );
    let stats = c.get_stats().await.unwrap();
    assert_eq!(stats.poison_dlq_failures, 1);
    assert_eq!(stats.poison_messages, 0);
    let pending = pending_all(&ctx.backend(), &ctx.key("s"), "g").await;
    assert_eq!(pending[0].id, sent[0], "still pending: {pending:?}");
    assert_eq!(pending[0].consumer, "c");
    assert_eq!(ctx.backend().len(&c.keys().dlq("s")).await.unwrap(), 0);
}
