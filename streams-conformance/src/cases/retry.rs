//! Retries: exponential backoff, the retry limit, private to one group, fenced.

use std::time::{Duration, Instant};

use serde_json::json;
use streams_core::backend::{Add, ScheduleKeys};
use streams_core::{MessageStatus, RetryOptions, RetryPolicy, StreamError, StreamMessage};

use crate::assert_err;
use crate::support::{
    TestContext, TestManager, entries, field, field_str, fields, ids, pending_all, read_n,
    read_now, send_n,
};

/// Tolerance for clocks that count whole milliseconds.
const MS: Duration = Duration::from_millis(2);

/// Reads `group` with short blocks until one message arrives; returns it and
/// when it arrived.
async fn poll_one(m: &TestManager, group: &str, within: Duration) -> (StreamMessage, Instant) {
    let deadline = Instant::now() + within;
    loop {
        let got = m
            .read_messages(group, None, Some(Duration::from_millis(20)))
            .await
            .unwrap();
        let at = Instant::now();
        match got.len() {
            0 => assert!(at < deadline, "no message on `{group}` within {within:?}"),
            1 => return (got.into_iter().next().unwrap(), at),
            n => panic!("expected one message, got {n}: {got:?}"),
        }
    }
}

/// A retried message is not due before `base * 2^retry_count` (200 ms, then
/// 400 ms): the schedule holds it, promoting finds nothing due and says when
/// it will be, and no consumer of the group gets it earlier.
pub async fn retry_not_due_before_backoff(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let b = ctx.second_manager("b").await;
    let sent = send_n(&a, "s", 1).await;
    let mut current = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert!(read_now(&b, "g").await.is_empty());
    let backend = ctx.backend();
    let schedule = a.keys().retry_schedule("s", "g");
    let ready = a.keys().retry_ready("s", "g");

    // Round 0: a retries, b receives; round 1: b retries, a receives.
    for (n, (retrier, receiver)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
        let backoff = Duration::from_millis(200) * (1 << n);
        let started = Instant::now();
        assert!(retrier.retry_message(&current).await.unwrap());
        assert_eq!(backend.schedule_len(&schedule).await.unwrap(), 1);
        let promo = backend
            .promote_due(&[ScheduleKeys::new(schedule.clone(), ready.clone())], 10)
            .await
            .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(promo.len(), 1);
        match promo[0].promoted {
            0 => {
                let next = promo[0].next_due_in.expect("the retry is scheduled");
                assert!(next <= backoff, "due in {next:?}, backoff {backoff:?}");
                assert!(
                    next + elapsed + MS >= backoff,
                    "due in {next:?} after {elapsed:?}: sooner than {backoff:?}"
                );
                assert_eq!(backend.len(&ready).await.unwrap(), 0);
            }
            1 => assert!(elapsed + MS >= backoff, "promoted after {elapsed:?}"),
            p => panic!("promoted {p} entries"),
        }
        let (copy, at) = poll_one(receiver, "g", Duration::from_secs(3)).await;
        let after = at - started;
        assert!(
            after + MS >= backoff,
            "round {n}: delivered after {after:?}"
        );
        assert_eq!(copy.retry_count, n as u32 + 1);
        assert_eq!(copy.status, MessageStatus::Retry);
        assert_eq!(copy.stream, "s");
        assert_eq!(copy.mid, current.mid);
        assert_eq!(copy.data, current.data);
        assert_eq!(copy.timestamp, current.timestamp);
        assert!(copy.delivery.as_ref().unwrap().from_retry);
        assert_ne!(copy.id, sent[0]);
        assert_eq!(backend.schedule_len(&schedule).await.unwrap(), 0);
        current = copy;
    }
}

/// A retried message is delivered soon after its backoff: a read blocked
/// on the group wakes for it (at 200 ms, then 400 ms, within 500 ms more),
/// with the retry count, last error, payload, `mid` and creation time of
/// the copy right; acknowledging the last copy leaves nothing behind.
pub async fn retry_due_after_backoff(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 1).await;
    let original = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    let mut current = original.clone();
    for (n, error) in ["first failure", "second failure"].into_iter().enumerate() {
        let backoff = Duration::from_millis(200) * (1 << n);
        let started = Instant::now();
        assert!(a.retry_with_error(&current, error).await.unwrap());
        let got = a
            .read_messages("g", None, Some(Duration::from_secs(5)))
            .await
            .unwrap();
        let after = started.elapsed();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            after + MS >= backoff && after <= backoff + Duration::from_millis(500),
            "round {n}: delivered after {after:?}, backoff {backoff:?}"
        );
        let copy = got.into_iter().next().unwrap();
        assert_eq!(copy.retry_count, n as u32 + 1);
        assert_eq!(copy.error.as_deref(), Some(error));
        assert_eq!(copy.data, original.data);
        assert_eq!(copy.mid, original.mid);
        assert_eq!(copy.timestamp, original.timestamp);
        assert_eq!(copy.stream, "s");
        current = copy;
    }
    assert!(a.acknowledge(&current, "g").await.unwrap());
    let backend = ctx.backend();
    let ready = a.keys().retry_ready("s", "g");
    assert_eq!(backend.len(&ready).await.unwrap(), 0);
    assert!(pending_all(&backend, &ready, "g").await.is_empty());
    assert!(pending_all(&backend, &ctx.key("s"), "g").await.is_empty());
    let stats = a.get_stats().await.unwrap();
    assert_eq!(stats.messages_retried, 2);
    assert_eq!(stats.retries_promoted, 2);
}

/// At the retry limit, `retry_message` returns `false` and leaves the
/// message pending where it is; nothing is scheduled.
pub async fn retry_limit_returns_false(ctx: &TestContext) {
    let cfg = ctx.config("a");
    let dlq = cfg.dlq.clone().with_retry_limit(1);
    let a = ctx.manager_with(cfg.with_dlq(dlq));
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 1).await;
    let msg = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert!(a.retry_message(&msg).await.unwrap());
    let copy = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(copy.retry_count, 1);
    assert!(!a.retry_message(&copy).await.unwrap(), "the limit is 1");

    let backend = ctx.backend();
    let ready = a.keys().retry_ready("s", "g");
    assert_eq!(
        backend
            .schedule_len(&a.keys().retry_schedule("s", "g"))
            .await
            .unwrap(),
        0
    );
    let pending = pending_all(&backend, &ready, "g").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, copy.id);
    assert_eq!(pending[0].consumer, "a");
    let stats = a.get_stats().await.unwrap();
    assert_eq!(stats.messages_retried, 1);
    assert_eq!(stats.messages_failed, 1);
    assert!(a.acknowledge(&copy, "g").await.unwrap());

    // With a limit of 0 no retry is ever scheduled.
    let cfg = ctx.config("z");
    let dlq = cfg.dlq.clone().with_retry_limit(0);
    let z = ctx.manager_with(cfg.with_dlq(dlq));
    z.send_message("s", json!({"k": 2}), None).await.unwrap();
    let msg = read_n(&z, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert!(!z.retry_message(&msg).await.unwrap());
    let pending = pending_all(&backend, &ctx.key("s"), "g").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, msg.id);
    assert_eq!(pending[0].consumer, "z");
}

/// A retry reaches only the group that retried it: another group on the
/// same stream, which already had the message, does not get the copy, and
/// the source stream gets no new entry.
pub async fn retried_message_reaches_only_its_group(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g1", &["s"]).await;
    ctx.create_group(&m, "g2", &["s"]).await;
    let sent = send_n(&m, "s", 1).await;
    let in_g1 = read_n(&m, "g1", 1, Duration::from_secs(5)).await;
    let in_g2 = read_n(&m, "g2", 1, Duration::from_secs(5)).await;
    assert_eq!(ids(&in_g1), sent);
    assert_eq!(ids(&in_g2), sent);
    assert!(m.acknowledge(&in_g2[0], "g2").await.unwrap());

    assert!(m.retry_message(&in_g1[0]).await.unwrap());
    let copy = read_n(&m, "g1", 1, Duration::from_secs(5)).await;
    assert_eq!(copy[0].retry_count, 1);
    // Well after the copy was due, g2 has nothing new, from any consumer.
    let other = ctx.second_manager("b").await;
    for reader in [&m, &other] {
        let got = reader
            .read_messages("g2", None, Some(Duration::from_millis(300)))
            .await
            .unwrap();
        assert!(got.is_empty(), "g2 got {got:?}");
    }
    let backend = ctx.backend();
    assert_eq!(backend.len(&ctx.key("s")).await.unwrap(), 1);
    assert!(
        backend
            .groups(&m.keys().retry_ready("s", "g2"))
            .await
            .unwrap()
            .iter()
            .all(|g| g.pending == 0)
    );
    assert_eq!(
        backend.len(&m.keys().retry_ready("s", "g2")).await.unwrap(),
        0
    );
}

/// Retry and dead-letter moves are fenced: after consumer B claimed the
/// message that A read, A's `retry_message` and `send_to_dlq` fail with
/// `NotOwner` naming B and write nothing; B still holds it and can retry it.
pub async fn retry_moves_are_fenced(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 1).await;
    let msg = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    let b = ctx.second_manager("b").await;
    let claimed = b
        .claim_pending_messages("g", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(ids(&claimed), sent);

    assert_err!(
        a.retry_message(&msg).await,
        StreamError::NotOwner { owner: Some(ref o), ref consumer, ref id, .. }
            if o == "b" && consumer == "a" && id == &sent[0]
    );
    assert_err!(
        a.send_to_dlq(&msg, "failed in a", Some("g")).await,
        StreamError::NotOwner { owner: Some(ref o), .. } if o == "b"
    );
    let backend = ctx.backend();
    let schedule = a.keys().retry_schedule("s", "g");
    assert_eq!(backend.schedule_len(&schedule).await.unwrap(), 0);
    assert_eq!(backend.len(&a.keys().dlq("s")).await.unwrap(), 0);
    let pending = pending_all(&backend, &ctx.key("s"), "g").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].consumer, "b");
    assert_eq!(pending[0].deliveries, 2);
    let stats = a.get_stats().await.unwrap();
    assert_eq!(stats.messages_retried, 0);
    assert_eq!(stats.messages_dead_lettered, 0);
    assert_eq!(stats.messages_failed, 0);

    assert!(b.retry_message(&claimed[0]).await.unwrap());
    assert_eq!(backend.schedule_len(&schedule).await.unwrap(), 1);
    assert!(pending_all(&backend, &ctx.key("s"), "g").await.is_empty());
}

/// A message that was already acknowledged cannot be retried or
/// dead-lettered through its group: `NotOwner` without an owner, and
/// nothing is written.
pub async fn retry_of_acked_message_is_refused(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 1).await;
    let msg = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert!(a.acknowledge(&msg, "g").await.unwrap());
    assert_err!(
        a.retry_message(&msg).await,
        StreamError::NotOwner { owner: None, .. }
    );
    assert_err!(
        a.send_to_dlq(&msg, "late", Some("g")).await,
        StreamError::NotOwner { owner: None, .. }
    );
    let backend = ctx.backend();
    assert_eq!(
        backend
            .schedule_len(&a.keys().retry_schedule("s", "g"))
            .await
            .unwrap(),
        0
    );
    assert!(entries(&backend, &a.keys().dlq("s")).await.is_empty());
}

/// The retry delay is `min(cap, base * 2^retry_count)` without jitter, and
/// jitter only ever lengthens it, by at most the given fraction, also in the
/// schedule a retry writes.
pub async fn retry_backoff_doubles_up_to_cap(ctx: &TestContext) {
    let a = ctx.manager("a");
    let ms = Duration::from_millis;
    let delays: Vec<_> = (0..7).map(|n| a.retry_delay(n)).collect();
    assert_eq!(
        delays,
        [
            ms(200),
            ms(400),
            ms(800),
            ms(1600),
            ms(3200),
            ms(5000),
            ms(5000)
        ]
    );
    assert_eq!(a.retry_delay(u32::MAX), ms(5000));

    let cfg = ctx.config("j");
    let retry = cfg.retry.clone().with_jitter(0.5);
    let j = ctx.manager_with(cfg.with_retry(retry));
    let samples: Vec<_> = (0..64).map(|_| j.retry_delay(1)).collect();
    assert!(
        samples.iter().all(|d| *d >= ms(400) && *d <= ms(600)),
        "{samples:?}"
    );
    assert!(samples.iter().any(|d| *d != samples[0]), "jitter varies");

    // A jittered retry is scheduled within [base, 1.5 * base].
    ctx.create_group(&j, "g", &["s"]).await;
    send_n(&j, "s", 1).await;
    let msg = read_n(&j, "g", 1, Duration::from_secs(5)).await.remove(0);
    let started = Instant::now();
    assert!(j.retry_message(&msg).await.unwrap());
    let pairs = [ScheduleKeys::new(
        j.keys().retry_schedule("s", "g"),
        j.keys().retry_ready("s", "g"),
    )];
    let promo = ctx.backend().promote_due(&pairs, 10).await.unwrap();
    let elapsed = started.elapsed();
    if promo[0].promoted == 0 {
        let next = promo[0].next_due_in.expect("scheduled");
        assert!(next <= ms(300), "due in {next:?}");
        assert!(
            next + elapsed + MS >= ms(200),
            "due in {next:?} after {elapsed:?}"
        );
    } else {
        assert!(elapsed + MS >= ms(200), "promoted after {elapsed:?}");
    }
}

/// A retry copy keeps the fields another producer added beyond the
/// envelope (byte for byte), so a retry drops nothing.
pub async fn retry_keeps_extra_fields(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let stored = fields(&[
        ("data", b"{\"k\":1}"),
        ("trace_id", b"abc-123"),
        ("blob", b"\x00\xff"),
    ]);
    ctx.backend()
        .add(Add::new(ctx.key("s"), stored))
        .await
        .unwrap();
    let msg = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(msg.status, MessageStatus::Pending);
    assert_eq!(msg.data["k"], 1);
    assert!(a.retry_message(&msg).await.unwrap());
    let copy = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(copy.retry_count, 1);
    assert_eq!(copy.data, msg.data);
    let ready = entries(&ctx.backend(), &a.keys().retry_ready("s", "g")).await;
    assert_eq!(ready.len(), 1);
    assert_eq!(field(&ready[0].fields, "trace_id"), Some(&b"abc-123"[..]));
    assert_eq!(field(&ready[0].fields, "blob"), Some(&b"\x00\xff"[..]));
    assert_eq!(field(&ready[0].fields, "retry_count"), Some(&b"1"[..]));
    assert_eq!(
        ready[0]
            .fields
            .iter()
            .filter(|(k, _)| k.as_ref() == b"data")
            .count(),
        1
    );
}

/// Retry and dead-letter copies carry the payload's stored bytes: a number
/// beyond 64 bits written by another language (Python's `2**64`), key order
/// and spacing survive unchanged, unless the handler changed `data`.
pub async fn copies_keep_the_stored_payload(ctx: &TestContext) {
    let m = ctx.manager_with(
        ctx.config("a")
            .with_dlq(streams_core::DlqConfig::default().with_retry_backoff(Duration::ZERO)),
    );
    ctx.create_group(&m, "g", &["s"]).await;
    let stored: &[u8] = b"{\"z\": 18446744073709551616, \"a\":[1.50,2]}";
    let backend = ctx.backend();
    for _ in 0..2 {
        backend
            .add(Add::new(
                ctx.key("s"),
                fields(&[("data", stored), ("ts", b"t")]),
            ))
            .await
            .unwrap();
    }
    let got = read_n(&m, "g", 2, Duration::from_secs(5)).await;
    assert!(m.retry_message(&got[0]).await.unwrap());
    m.send_to_dlq(&got[1], "bad", Some("g")).await.unwrap();
    m.promote_due_retries(Some("g")).await.unwrap();
    let ready = entries(&backend, &m.keys().retry_ready("s", "g")).await;
    assert_eq!(ready.len(), 1);
    assert_eq!(field(&ready[0].fields, "data"), Some(stored), "retry copy");
    let dlq = entries(&backend, &m.keys().dlq("s")).await;
    assert_eq!(field(&dlq[0].fields, "data"), Some(stored), "dead letter");

    // A handler that changes `data` retries what it changed.
    let copy = read_n(&m, "g", 1, Duration::from_secs(5)).await.remove(0);
    let mut changed = copy.clone();
    changed.data.insert("progress".to_owned(), json!("half"));
    assert!(m.retry_message(&changed).await.unwrap());
    m.promote_due_retries(Some("g")).await.unwrap();
    let again = read_n(&m, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(again.data["progress"], "half");
    assert_eq!(again.retry_count, 2);
}

/// A foreign value at a group's retry-schedule key (another program wrote
/// a hash there) does not stop the group: live messages are still
/// delivered, the failure is counted in the statistics, and `health`
/// reports it; once the key is fixed, retries flow again.
pub async fn foreign_schedule_value_does_not_stop_reads(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    let backend = ctx.backend();
    let schedule = m.keys().retry_schedule("s", "g");
    // The registry call writes a hash: a value of the wrong kind.
    backend.registry_put(&schedule, "junk", "1").await.unwrap();
    let sent = send_n(&m, "s", 3).await;
    let got = read_n(&m, "g", 3, Duration::from_secs(5)).await;
    assert_eq!(ids(&got), sent);
    let stats = m.get_stats().await.unwrap();
    assert!(stats.promote_failures >= 1, "{stats:?}");
    let report = m.health().await.unwrap();
    assert!(!report.healthy, "{report:#?}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("cannot be promoted") || p.contains("unreadable")),
        "{:?}",
        report.problems
    );
    assert_eq!(m.promote_due_retries(Some("g")).await.unwrap(), 0);
    assert!(m.acknowledge_many(&got, "g").await.unwrap() == 3);

    // Fixed: the key is removed, and retries flow again.
    assert_eq!(backend.delete_keys(&[schedule]).await.unwrap(), 1);
    send_n(&m, "s", 1).await;
    let msg = read_n(&m, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert!(m.retry_message(&msg).await.unwrap());
    let copy = read_n(&m, "g", 1, Duration::from_secs(5)).await;
    assert_eq!(copy[0].retry_count, 1);
    let report = m.health().await.unwrap();
    assert!(report.healthy, "{report:#?}");
}

/// Due retries reach their group without any reader of that group in this
/// library: `promote_due_retries` (of one group, or of every registered
/// group) moves them into the group's ready stream, where consumers in any
/// language read them.
pub async fn promote_due_retries_without_a_reader(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    ctx.create_group(&a, "h", &["s"]).await;
    send_n(&a, "s", 1).await;
    let msg = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert!(a.retry_message(&msg).await.unwrap());
    let ready = a.keys().retry_ready("s", "g");
    let backend = ctx.backend();
    // Another process that never reads `g` promotes it once it is due.
    let upkeep = ctx.second_manager("upkeep").await;
    assert_eq!(upkeep.promote_due_retries(None).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(upkeep.promote_due_retries(None).await.unwrap(), 1);
    let copies = entries(&backend, &ready).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(field_str(&copies[0].fields, "retry_count"), Some("1"));
    assert_eq!(upkeep.get_stats().await.unwrap().retries_promoted, 1);
    crate::assert_err!(
        upkeep.promote_due_retries(Some("nope")).await,
        StreamError::GroupNotFound { .. }
    );
}

/// A group's own retry policy applies to its messages, whichever manager
/// retries them (it is found in the registry); other groups keep the
/// manager's.
pub async fn group_retry_policy_applies(ctx: &TestContext) {
    let a = ctx.manager("a");
    let strict = ctx.group("strict", &["s"]).with_retry(RetryPolicy::new(
        0,
        Duration::from_secs(60),
        Duration::from_secs(60),
    ));
    a.create_consumer_group(&strict).await.unwrap();
    ctx.create_group(&a, "lenient", &["s"]).await;
    send_n(&a, "s", 1).await;
    // Another manager knows the group by name only.
    let b = ctx.second_manager("b").await;
    let one = read_n(&b, "strict", 1, Duration::from_secs(5))
        .await
        .remove(0);
    assert!(
        !b.retry_message(&one).await.unwrap(),
        "the group allows no retry"
    );
    let two = read_n(&b, "lenient", 1, Duration::from_secs(5))
        .await
        .remove(0);
    assert!(
        b.retry_message(&two).await.unwrap(),
        "the manager's policy allows 3"
    );
    assert_eq!(
        b.group_config("strict").await.unwrap().retry.unwrap().limit,
        0
    );
    assert!(b.acknowledge(&one, "strict").await.unwrap());
}

/// `retry_with` records the given error and is due after the given delay,
/// not the backoff; the retry limit applies all the same.
pub async fn retry_with_sets_error_and_delay(ctx: &TestContext) {
    let cfg = ctx.config("a");
    let dlq = cfg
        .dlq
        .clone()
        .with_retry_limit(1)
        .with_retry_backoff(Duration::from_secs(60));
    let a = ctx.manager_with(cfg.with_dlq(dlq));
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 1).await;
    let msg = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    let options = RetryOptions::new()
        .with_error("rate limited")
        .with_delay(Duration::from_millis(100));
    let retried_at = Instant::now();
    assert!(a.retry_with(&msg, options.clone()).await.unwrap());
    let (copy, at) = poll_one(&a, "g", Duration::from_secs(5)).await;
    assert!(at - retried_at >= Duration::from_millis(100) - MS);
    assert!(
        at - retried_at < Duration::from_secs(30),
        "not the 60 s backoff"
    );
    assert_eq!(copy.error.as_deref(), Some("rate limited"));
    assert_eq!(copy.retry_count, 1);
    assert!(
        !a.retry_with(&copy, options).await.unwrap(),
        "the limit holds"
    );
    assert!(a.acknowledge(&copy, "g").await.unwrap());
}

/// `retry_many` schedules a retry of each message as `retry_message` does
/// and reports each outcome in order: `true` when scheduled, `false` past
/// the retry limit (the message stays pending), `NotOwner` for one
/// acknowledged meanwhile, `NotDelivered` for one never read; one refused
/// does not stop the others.
pub async fn retry_many_schedules_each(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    send_n(&a, "s", 4).await;
    let mut got = read_n(&a, "g", 4, Duration::from_secs(5)).await;
    assert!(a.acknowledge(&got[1], "g").await.unwrap());
    got[3].retry_count = a.config().dlq.retry_limit;
    got.push(StreamMessage::new("s", serde_json::Map::new()));

    let outcomes = a.retry_many(&got).await.unwrap();
    assert_eq!(outcomes.len(), 5);
    assert!(matches!(outcomes[0], Ok(true)), "{:?}", outcomes[0]);
    assert!(
        matches!(outcomes[1], Err(StreamError::NotOwner { owner: None, .. })),
        "{:?}",
        outcomes[1]
    );
    assert!(matches!(outcomes[2], Ok(true)), "{:?}", outcomes[2]);
    assert!(matches!(outcomes[3], Ok(false)), "{:?}", outcomes[3]);
    assert!(
        matches!(outcomes[4], Err(StreamError::NotDelivered { .. })),
        "{:?}",
        outcomes[4]
    );

    let backend = ctx.backend();
    let schedule = a.keys().retry_schedule("s", "g");
    assert_eq!(backend.schedule_len(&schedule).await.unwrap(), 2);
    let pending = pending_all(&backend, &ctx.key("s"), "g").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, got[3].id);
    assert_eq!(a.get_stats().await.unwrap().messages_retried, 2);
    assert!(a.retry_many(&[]).await.unwrap().is_empty());
}

/// A full live read may leave a group's ready streams out while it has just
/// found them empty (one round trip per read instead of two), but never for
/// longer than the promote interval: a retry another process promoted is
/// read within about that interval even while the main stream always has
/// work, and a retry this manager promoted itself is read at once.
pub async fn ready_retries_are_read_while_the_stream_is_busy(ctx: &TestContext) {
    let interval = Duration::from_millis(300);
    let a = ctx.manager_with(ctx.config("a").with_promote_interval(interval));
    ctx.create_group(&a, "g", &["s"]).await;
    let b = ctx
        .second_manager_with(ctx.config("b").with_promote_interval(interval))
        .await;
    send_n(&a, "s", 1).await;
    let taken = read_n(&b, "g", 1, Duration::from_secs(5)).await.remove(0);

    // `a` is busy with fresh work: each read finds the ready stream empty.
    let busy_read = |m: &TestManager| {
        let m = m.clone();
        async move {
            send_n(&m, "s", 20).await;
            let got = m
                .read_messages("g", Some(10), Some(Duration::from_millis(20)))
                .await
                .expect("read_messages");
            assert!(!got.is_empty(), "the stream has fresh work");
            for msg in &got {
                assert!(m.acknowledge(msg, "g").await.unwrap());
            }
            got
        }
    };
    for _ in 0..3 {
        busy_read(&a).await;
    }

    // Another process retries what it took, due at once, and promotes it.
    assert!(
        b.retry_with(&taken, RetryOptions::new().with_delay(Duration::ZERO))
            .await
            .unwrap()
    );
    assert_eq!(b.promote_due_retries(Some("g")).await.unwrap(), 1);
    let promoted = Instant::now();
    let copy = loop {
        let got = busy_read(&a).await;
        if let Some(copy) = got.into_iter().find(|m| m.retry_count == 1) {
            break copy;
        }
        assert!(
            promoted.elapsed() < interval + Duration::from_millis(700),
            "the promoted retry was not read within {:?} of a promote interval of {interval:?}",
            promoted.elapsed()
        );
    };
    assert_eq!(copy.mid, taken.mid);
    assert!(copy.delivery.as_ref().unwrap().from_retry);

    // A retry `a` schedules, due at once, is promoted and read by its next
    // read, beside the fresh work.
    send_n(&a, "s", 1).await;
    let own = read_n(&a, "g", 1, Duration::from_secs(5)).await.remove(0);
    assert!(
        a.retry_with(&own, RetryOptions::new().with_delay(Duration::ZERO))
            .await
            .unwrap()
    );
    let got = busy_read(&a).await;
    assert!(
        got.iter().any(|m| m.mid == own.mid && m.retry_count == 1),
        "the next read has the retry it was due to promote: {got:?}"
    );
}
