//! Backend primitives, called directly: the Redis semantics the manager
//! relies on.

use std::collections::HashSet;
use std::ops::Bound;
use std::time::{Duration, Instant};

use streams_core::backend::{
    Ack, Add, AutoClaim, ConsumerRef, ConsumerRemoval, CreateGroup, Cursor, EntryId, KeyEntries,
    Lease, Move, MoveOutcome, MoveTarget, PendingEntry, PendingQuery, Probe, RangeQuery, ReadGroup,
    ScheduleKeys, StartAt,
};
use streams_core::{Entry, Fields, StreamError};

use crate::assert_err;
use crate::support::{DynBackend, TestContext, entries, fields, pending_all, trim_exact};

fn entry_fields(i: usize) -> Fields {
    fields(&[("i", i.to_string().as_bytes()), ("tag", b"t")])
}

/// Adds `n` entries `i = 0..n` to `key`; returns their ids.
async fn add_n(backend: &DynBackend, key: &str, n: usize) -> Vec<EntryId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(backend.add(Add::new(key, entry_fields(i))).await.unwrap());
    }
    ids
}

/// Creates group `g` on `key` from its beginning.
async fn group_g(backend: &DynBackend, key: &str) {
    backend
        .create_group(CreateGroup::new(key, "g", StartAt::Beginning))
        .await
        .unwrap();
}

/// A non-blocking read of group `g` on one key.
async fn read(
    backend: &DynBackend,
    key: &str,
    consumer: &str,
    count: usize,
) -> streams_core::Result<Vec<KeyEntries>> {
    let keys = [key.to_owned()];
    backend
        .read_group(ReadGroup::new("g", consumer, &keys, count))
        .await
}

fn entry_ids(replies: &[KeyEntries]) -> Vec<EntryId> {
    replies
        .iter()
        .flat_map(|r| r.entries.iter().map(|e| e.entry.id.clone()))
        .collect()
}

fn pending_ids(pending: &[PendingEntry]) -> Vec<EntryId> {
    pending.iter().map(|p| p.id.clone()).collect()
}

fn ack<'a>(key: &'a str, ids: &'a [EntryId]) -> Ack<'a> {
    Ack::new(key, "g", ids)
}

fn claim<'a>(key: &'a str, consumer: &'a str, min_idle: Duration, count: usize) -> AutoClaim<'a> {
    AutoClaim::new(key, "g", consumer, min_idle, count)
}

/// `redeliver` delivers again, by id and in the order given, the entries
/// the consumer still holds, counting a delivery each; entries acknowledged
/// or held by another consumer are skipped and untouched; ids whose entries
/// are gone are reported and stay pending; a missing group is `NoGroup`.
pub async fn redeliver_serves_only_what_the_consumer_holds(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    group_g(&backend, &key).await;
    let ids = add_n(&backend, &key, 5).await;
    read(&backend, &key, "a", 5).await.unwrap();
    assert_eq!(backend.ack(ack(&key, &ids[1..2])).await.unwrap(), 1);
    let page = backend
        .auto_claim(
            claim(&key, "b", Duration::ZERO, 1).from_cursor(Some(Cursor::new(ids[2].as_str()))),
        )
        .await
        .unwrap();
    assert_eq!(page.entries[0].entry.id, ids[2]);
    trim_exact(&backend, &key, 4).await; // ids[0] is gone while pending

    let asked = [
        ids[4].clone(),
        ids[0].clone(),
        ids[1].clone(),
        ids[2].clone(),
        ids[3].clone(),
    ];
    let reply = backend
        .redeliver(Lease::new(&key, "g", "a", &asked))
        .await
        .unwrap();
    assert_eq!(reply.key, key);
    let got: Vec<_> = reply
        .entries
        .iter()
        .map(|e| (e.entry.id.clone(), e.deliveries))
        .collect();
    assert_eq!(
        got,
        [(ids[4].clone(), 2), (ids[3].clone(), 2)],
        "in the order asked"
    );
    assert_eq!(reply.entries[0].entry.fields, entry_fields(4));
    assert_eq!(reply.deleted, ids[..1]);
    let pending: Vec<_> = pending_all(&backend, &key, "g")
        .await
        .into_iter()
        .map(|p| (p.id, p.consumer, p.deliveries))
        .collect();
    assert_eq!(
        pending,
        [
            (ids[0].clone(), "a".to_owned(), 1),
            (ids[2].clone(), "b".to_owned(), 2),
            (ids[3].clone(), "a".to_owned(), 2),
            (ids[4].clone(), "a".to_owned(), 2),
        ]
    );
    let fresh = backend
        .pending(PendingQuery::new(&key, "g", 10).of_consumer("a").within(
            Bound::Included(ids[3].clone()),
            Bound::Included(ids[4].clone()),
        ))
        .await
        .unwrap();
    assert!(
        fresh.iter().all(|p| p.idle < Duration::from_secs(1)),
        "idle starts again"
    );
    assert!(
        backend
            .redeliver(Lease::new(&key, "g", "a", &[]))
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    assert_err!(
        backend.redeliver(Lease::new(&key, "nope", "a", &ids)).await,
        StreamError::NoGroup { .. }
    );
    assert_err!(
        backend
            .redeliver(Lease::new(&ctx.key("missing"), "g", "a", &ids))
            .await,
        StreamError::NoGroup { .. }
    );
}

/// The backend names itself, reports its server's version and its
/// capabilities, and answers a ping.
pub async fn backend_reports_version(ctx: &TestContext) {
    let backend = ctx.backend();
    let info = backend.server_info().await.unwrap();
    assert_eq!(info.backend, backend.name());
    assert_eq!(backend.name(), ctx.backend_name());
    assert!(!info.version.is_empty());
    assert_eq!(
        backend.capabilities(),
        ctx.second_backend().await.capabilities()
    );
    backend.ping().await.unwrap();
    ctx.second_backend().await.ping().await.unwrap();
}

/// Every entry gets its own id, and a stream keeps its entries in the
/// order they were added, over single and batch adds; ids are never
/// reused, not even after the last entry was deleted.
pub async fn ids_strictly_increase(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    let mut ids = add_n(&backend, &key, 200).await;
    let adds = (0..100)
        .map(|i| Add::new(key.clone(), entry_fields(i)))
        .collect();
    ids.extend(backend.add_batch(adds).await.unwrap());
    let unique: HashSet<&EntryId> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an id was given twice");
    let stored: Vec<EntryId> = entries(&backend, &key)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(stored, ids, "the stream keeps the order of adds");
    trim_exact(&backend, &key, 1).await;
    group_g(&backend, &key).await;
    let last = ids.last().cloned().unwrap();
    assert_eq!(
        backend
            .ack(Ack::new(&key, "x", std::slice::from_ref(&last)).deleting(true))
            .await
            .unwrap(),
        0
    );
    assert_eq!(backend.len(&key).await.unwrap(), 0);
    let next = add_n(&backend, &key, 1).await;
    assert!(!ids.contains(&next[0]), "id {:?} was reused", next[0]);
    let got = read(&backend, &key, "a", 10).await.unwrap();
    assert_eq!(
        entry_ids(&got),
        next,
        "the new entry comes after the old ones"
    );
}

/// `range` reads entries without any group, inclusive of both ends, in id
/// order, up to `count`, with their fields as added; a missing stream is empty.
pub async fn range_reads_without_group(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    let ids = add_n(&backend, &key, 5).await;
    let range = |start: Bound<EntryId>, end: Bound<EntryId>, count: usize| {
        let backend = std::sync::Arc::clone(&backend);
        let key = key.clone();
        async move {
            backend
                .range(RangeQuery::new(&key, count).within(start, end))
                .await
                .unwrap()
        }
    };
    let all = range(Bound::Unbounded, Bound::Unbounded, 100).await;
    let expected: Vec<Entry> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Entry::new(id.clone(), entry_fields(i)))
        .collect();
    assert_eq!(all, expected);
    let (one, three) = (ids[1].clone(), ids[3].clone());
    let mid = range(
        Bound::Included(one.clone()),
        Bound::Included(three.clone()),
        100,
    );
    assert_eq!(mid.await, expected[1..4]);
    let open = range(Bound::Excluded(one), Bound::Excluded(three), 100);
    assert_eq!(open.await, expected[2..3]);
    assert_eq!(
        range(Bound::Unbounded, Bound::Unbounded, 2).await,
        expected[..2]
    );
    assert_eq!(
        range(Bound::Included(ids[4].clone()), Bound::Unbounded, 10).await,
        expected[4..]
    );
    assert!(
        backend
            .range(RangeQuery::new(&ctx.key("missing"), 10))
            .await
            .unwrap()
            .is_empty()
    );
    // Ranges do not deliver anything to groups.
    group_g(&backend, &key).await;
    let got = read(&backend, &key, "a", 100).await.unwrap();
    assert_eq!(entry_ids(&got), ids);
}

/// A group read on a missing stream, or on a stream without the group, fails
/// with `NoGroup` at once, even when asked to block, and even when other
/// keys of the read have the group; so do claims and consumer listings.
pub async fn read_missing_group_is_nogroup(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    assert_err!(
        read(&backend, &key, "a", 10).await,
        StreamError::NoGroup { ref group, ref stream } if group == "g" && stream == &key
    );
    add_n(&backend, &key, 1).await;
    let started = Instant::now();
    let keys = [key.clone()];
    let blocked = backend
        .read_group(ReadGroup::new("g", "a", &keys, 10).with_block(Some(Duration::from_secs(3))))
        .await;
    assert_err!(blocked, StreamError::NoGroup { .. });
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "NOGROUP took {:?}",
        started.elapsed()
    );
    let other = ctx.key("other");
    group_g(&backend, &other).await;
    let keys = [other.clone(), key.clone()];
    let mixed = backend
        .read_group(ReadGroup::new("g", "a", &keys, 10).with_block(Some(Duration::from_secs(3))))
        .await;
    assert_err!(mixed, StreamError::NoGroup { .. });
    assert!(started.elapsed() < Duration::from_secs(2));

    // Claims and consumer listings of a missing key or group fail the same way.
    for (k, group) in [(&ctx.key("missing"), "g"), (&key, "g"), (&other, "nope")] {
        assert_err!(
            backend
                .auto_claim(AutoClaim::new(k, group, "a", Duration::ZERO, 10))
                .await,
            StreamError::NoGroup { .. }
        );
        assert_err!(
            backend.consumers(k, group).await,
            StreamError::NoGroup { .. }
        );
    }
}

/// Pending details name each entry's consumer and delivery count, filter by
/// consumer, id range and idle time, and honour `count`.
pub async fn pending_details_report_owner_and_count(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    group_g(&backend, &key).await;
    let ids = add_n(&backend, &key, 3).await;
    read(&backend, &key, "a", 2).await.unwrap();
    read(&backend, &key, "b", 1).await.unwrap();
    let query = || PendingQuery::new(&key, "g", 100);

    let all = pending_all(&backend, &key, "g").await;
    let got: Vec<_> = all
        .iter()
        .map(|p| (p.id.as_str(), p.consumer.as_str(), p.deliveries))
        .collect();
    assert_eq!(
        got,
        [
            (ids[0].as_str(), "a", 1),
            (ids[1].as_str(), "a", 1),
            (ids[2].as_str(), "b", 1)
        ]
    );
    let of_b = backend.pending(query().of_consumer("b")).await.unwrap();
    assert_eq!(pending_ids(&of_b), ids[2..]);
    let one = backend
        .pending(PendingQuery::new(&key, "g", 1))
        .await
        .unwrap();
    assert_eq!(pending_ids(&one), ids[..1]);
    let ranged = backend
        .pending(query().within(
            Bound::Included(ids[1].clone()),
            Bound::Included(ids[1].clone()),
        ))
        .await
        .unwrap();
    assert_eq!(pending_ids(&ranged), ids[1..2]);
    let after_first = backend
        .pending(query().within(Bound::Excluded(ids[0].clone()), Bound::Unbounded))
        .await
        .unwrap();
    assert_eq!(pending_ids(&after_first), ids[1..]);
    let idle_long = backend
        .pending(query().idle_at_least(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(idle_long.is_empty());
    tokio::time::sleep(Duration::from_millis(80)).await;
    let idle = backend
        .pending(query().idle_at_least(Duration::from_millis(50)))
        .await
        .unwrap();
    assert_eq!(pending_ids(&idle), ids);
    assert!(idle.iter().all(|p| p.idle >= Duration::from_millis(50)));
}

/// A claim page reports pending entries whose stream entries were deleted
/// (they count towards the page size) and removes them from the pending
/// list; existing entries are claimed with one more delivery.
pub async fn claim_reports_deleted_entries(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    group_g(&backend, &key).await;
    let ids = add_n(&backend, &key, 4).await;
    read(&backend, &key, "a", 10).await.unwrap();
    trim_exact(&backend, &key, 1).await;

    // Deleted ids count towards a page's `count`, as in Redis.
    let first = backend
        .auto_claim(claim(&key, "b", Duration::ZERO, 2))
        .await
        .unwrap();
    assert_eq!(first.deleted, ids[..2]);
    assert!(first.entries.is_empty());
    assert!(first.next.is_some(), "more to scan");
    let page = backend
        .auto_claim(claim(&key, "b", Duration::ZERO, 10).from_cursor(first.next))
        .await
        .unwrap();
    assert_eq!(page.deleted, ids[2..3]);
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].entry.id, ids[3]);
    assert_eq!(page.entries[0].entry.fields, entry_fields(3));
    assert_eq!(page.entries[0].deliveries, 2);
    assert_eq!(page.next, None);
    let pending = pending_all(&backend, &key, "g").await;
    assert_eq!(pending_ids(&pending), ids[3..]);
    assert_eq!(pending[0].consumer, "b");

    let again = backend
        .auto_claim(claim(&key, "a", Duration::ZERO, 10))
        .await
        .unwrap();
    assert!(again.deleted.is_empty());
    assert_eq!(again.entries[0].deliveries, 3);
}

/// Claim pages follow a cursor: each page holds at most `count` entries
/// and names where the next starts, none after the last; entries not idle
/// long enough are not claimed.
pub async fn auto_claim_pages_with_cursor(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    group_g(&backend, &key).await;
    let ids = add_n(&backend, &key, 10).await;
    read(&backend, &key, "a", 10).await.unwrap();

    let none = backend
        .auto_claim(claim(&key, "b", Duration::from_secs(10), 4))
        .await
        .unwrap();
    assert!(none.entries.is_empty());
    assert!(none.deleted.is_empty());

    let mut cursor = None;
    let mut pages = Vec::new();
    loop {
        let page = backend
            .auto_claim(claim(&key, "b", Duration::ZERO, 4).from_cursor(cursor))
            .await
            .unwrap();
        pages.push(
            page.entries
                .iter()
                .map(|c| c.entry.id.clone())
                .collect::<Vec<_>>(),
        );
        assert!(page.entries.iter().all(|c| c.deliveries == 2));
        let Some(next) = page.next else { break };
        assert!(pages.len() < 10, "the cursor does not end");
        cursor = Some(next);
    }
    assert_eq!(
        pages,
        [ids[..4].to_vec(), ids[4..8].to_vec(), ids[8..].to_vec()]
    );
    assert!(
        pending_all(&backend, &key, "g")
            .await
            .iter()
            .all(|p| p.consumer == "b")
    );
}

/// `renew` and `hand_back` change only entries pending for the given
/// consumer and return those ids. Neither counts a delivery; a hand-back
/// also gives the delivery that brought the entry back and makes it
/// claimable at once, a renewal makes it fresh. An own entry that was
/// deleted leaves the pending list.
pub async fn set_idle_leaves_other_consumers_alone(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    group_g(&backend, &key).await;
    let ids = add_n(&backend, &key, 2).await;
    read(&backend, &key, "a", 1).await.unwrap();
    read(&backend, &key, "b", 1).await.unwrap();
    let idle_query = PendingQuery::new(&key, "g", 100).idle_at_least(Duration::from_secs(1800));
    let lease =
        |consumer: &'static str, ids: &'static [EntryId]| Lease::new(&key, "g", consumer, ids);
    let ids: &'static [EntryId] = Box::leak(ids.into_boxed_slice());

    let handed = backend.hand_back(lease("a", ids)).await.unwrap();
    assert_eq!(handed, ids[..1]);
    let idle = backend.pending(idle_query.clone()).await.unwrap();
    assert_eq!(
        pending_ids(&idle),
        ids[..1],
        "handed back: claimable at once"
    );
    let all = pending_all(&backend, &key, "g").await;
    let owners: Vec<_> = all
        .iter()
        .map(|p| (p.consumer.as_str(), p.deliveries))
        .collect();
    assert_eq!(
        owners,
        [("a", 0), ("b", 1)],
        "nothing changed hands; the hand-back gave its delivery back"
    );
    // Handed back again: the count does not go below zero.
    backend.hand_back(lease("a", &ids[..1])).await.unwrap();
    assert_eq!(pending_all(&backend, &key, "g").await[0].deliveries, 0);

    let renewed = backend.renew(lease("a", &ids[..1])).await.unwrap();
    assert_eq!(renewed, ids[..1]);
    assert!(backend.pending(idle_query).await.unwrap().is_empty());
    let counts: Vec<u64> = pending_all(&backend, &key, "g")
        .await
        .iter()
        .map(|p| p.deliveries)
        .collect();
    assert_eq!(counts, [0, 1], "a renewal counts nothing");
    let unknown: &'static [EntryId] = Box::leak(vec![EntryId::from("1-1")].into_boxed_slice());
    assert!(backend.renew(lease("a", unknown)).await.unwrap().is_empty());
    assert!(
        backend
            .hand_back(lease("a", unknown))
            .await
            .unwrap()
            .is_empty()
    );
    let missing = ctx.key("missing");
    assert!(
        backend
            .hand_back(Lease::new(&missing, "g", "a", ids))
            .await
            .unwrap()
            .is_empty()
    );

    // As XCLAIM does, an own entry that no longer exists leaves the pending list.
    trim_exact(&backend, &key, 1).await;
    assert!(
        backend
            .renew(lease("a", &ids[..1]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        pending_ids(&pending_all(&backend, &key, "g").await),
        ids[1..]
    );
}

/// Atomic moves check the entry first: one already acknowledged gives
/// `NotPending`, one held by another consumer gives `OwnedBy` with its
/// owner, and neither writes anything; an unfenced move of a pending entry
/// writes the copy and acknowledges the original.
pub async fn move_of_acked_entry_is_refused(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    let target = ctx.key("dead");
    let schedule = ctx.keys().retry_schedule("s", "g");
    group_g(&backend, &key).await;
    let ids = add_n(&backend, &key, 2).await;
    read(&backend, &key, "a", 10).await.unwrap();
    assert_eq!(backend.ack(ack(&key, &ids[..1])).await.unwrap(), 1);
    let mv = |id: &EntryId, consumer: Option<&str>, to_schedule: bool| {
        let target = if to_schedule {
            MoveTarget::Schedule {
                key: schedule.clone(),
                fields: fields(&[("copy", b"1")]),
                delay: Duration::from_secs(60),
            }
        } else {
            MoveTarget::Stream {
                key: target.clone(),
                fields: fields(&[("copy", b"1")]),
                trim: Vec::new(),
            }
        };
        let mv = Move::new(key.clone(), "g", id.clone(), target);
        match consumer {
            Some(c) => mv.fenced(c),
            None => mv,
        }
    };

    for to_schedule in [false, true] {
        assert_eq!(
            backend
                .move_entry(mv(&ids[0], Some("a"), to_schedule))
                .await
                .unwrap(),
            MoveOutcome::NotPending
        );
        assert_eq!(
            backend
                .move_entry(mv(&ids[0], None, to_schedule))
                .await
                .unwrap(),
            MoveOutcome::NotPending
        );
        assert_eq!(
            backend
                .move_entry(mv(&ids[1], Some("b"), to_schedule))
                .await
                .unwrap(),
            MoveOutcome::OwnedBy("a".to_owned())
        );
    }
    assert_eq!(backend.len(&target).await.unwrap(), 0);
    assert_eq!(backend.schedule_len(&schedule).await.unwrap(), 0);
    assert_eq!(
        pending_ids(&pending_all(&backend, &key, "g").await),
        ids[1..]
    );

    let moved = backend.move_entry(mv(&ids[1], None, false)).await.unwrap();
    let MoveOutcome::Moved {
        new_id: Some(new_id),
    } = moved
    else {
        panic!("expected a move with a new id, got {moved:?}");
    };
    let copies = entries(&backend, &target).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].id, new_id);
    assert_eq!(copies[0].fields, fields(&[("copy", b"1")]));
    assert!(pending_all(&backend, &key, "g").await.is_empty());
    assert_eq!(
        backend.len(&key).await.unwrap(),
        2,
        "the source entry stays"
    );
    // A group that does not exist has nothing pending.
    let missing = Move::new(
        key.clone(),
        "nope",
        ids[1].clone(),
        MoveTarget::Stream {
            key: target.clone(),
            fields: fields(&[("copy", b"1")]),
            trim: Vec::new(),
        },
    );
    assert_eq!(
        backend.move_entry(missing).await.unwrap(),
        MoveOutcome::NotPending
    );
}

/// Moves to a schedule hold entries until due; `promote_due` moves only due
/// ones into the ready stream, with their fields, and says when the next is
/// due; a move with `delete_source` also deletes the original entry.
pub async fn promote_due_moves_only_due_entries(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    let schedule = ctx.keys().retry_schedule("s", "g");
    let ready = ctx.keys().retry_ready("s", "g");
    group_g(&backend, &key).await;
    let ids = add_n(&backend, &key, 2).await;
    read(&backend, &key, "a", 10).await.unwrap();
    for (i, (id, delay)) in ids
        .iter()
        .zip([Duration::ZERO, Duration::from_secs(60)])
        .enumerate()
    {
        let target = MoveTarget::Schedule {
            key: schedule.clone(),
            fields: entry_fields(100 + i),
            delay,
        };
        let outcome = backend
            .move_entry(
                Move::new(key.clone(), "g", id.clone(), target)
                    .fenced("a")
                    .deleting_source(i == 1),
            )
            .await
            .unwrap();
        assert_eq!(outcome, MoveOutcome::Moved { new_id: None });
    }
    assert!(pending_all(&backend, &key, "g").await.is_empty());
    assert_eq!(
        entries(&backend, &key)
            .await
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        ids[..1],
        "delete_source removed the second original"
    );
    assert_eq!(backend.schedule_len(&schedule).await.unwrap(), 2);
    assert_eq!(backend.len(&ready).await.unwrap(), 0);

    let pairs = [ScheduleKeys::new(schedule.clone(), ready.clone())];
    let promo = backend.promote_due(&pairs, 10).await.unwrap();
    assert_eq!(promo.len(), 1);
    assert_eq!(promo[0].promoted, 1);
    let next = promo[0].next_due_in.expect("one more is scheduled");
    assert!(
        next > Duration::from_secs(50) && next <= Duration::from_secs(60),
        "next due in {next:?}"
    );
    assert_eq!(backend.schedule_len(&schedule).await.unwrap(), 1);
    let promoted = entries(&backend, &ready).await;
    assert_eq!(promoted.len(), 1);
    assert_eq!(promoted[0].fields, entry_fields(100));

    let again = backend.promote_due(&pairs, 10).await.unwrap();
    assert_eq!(again[0].promoted, 0);
    let empty = [ScheduleKeys::new(
        ctx.keys().retry_schedule("none", "g"),
        ctx.keys().retry_ready("none", "g"),
    )];
    let none = backend.promote_due(&empty, 10).await.unwrap();
    assert_eq!(none[0].promoted, 0);
    assert_eq!(none[0].next_due_in, None);
    assert_eq!(none[0].error, None);
}

/// A consumer holding pending entries is never deleted (the count is
/// reported); one without is; a missing one is reported missing.
pub async fn delete_consumer_keeps_pending_work(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    group_g(&backend, &key).await;
    let mut ids = add_n(&backend, &key, 3).await;
    let of_b = ids.pop().unwrap();
    read(&backend, &key, "a", 2).await.unwrap();
    // b becomes a consumer and finishes its work.
    read(&backend, &key, "b", 1).await.unwrap();
    assert_eq!(backend.ack(ack(&key, &[of_b])).await.unwrap(), 1);
    let mut consumers = backend.consumers(&key, "g").await.unwrap();
    consumers.sort_by(|x, y| x.name.cmp(&y.name));
    let got: Vec<_> = consumers
        .iter()
        .map(|c| (c.name.as_str(), c.pending))
        .collect();
    assert_eq!(got, [("a", 2), ("b", 0)]);

    assert_eq!(
        backend
            .delete_consumer(ConsumerRef::new(&key, "g", "a"))
            .await
            .unwrap(),
        ConsumerRemoval::HasPending(2)
    );
    assert_eq!(
        backend
            .delete_consumer(ConsumerRef::new(&key, "g", "b"))
            .await
            .unwrap(),
        ConsumerRemoval::Deleted
    );
    assert_eq!(
        backend
            .delete_consumer(ConsumerRef::new(&key, "g", "b"))
            .await
            .unwrap(),
        ConsumerRemoval::Missing
    );
    assert_eq!(
        backend
            .delete_consumer(ConsumerRef::new(&key, "nope", "a"))
            .await
            .unwrap(),
        ConsumerRemoval::Missing
    );
    assert_eq!(
        backend
            .delete_consumer(ConsumerRef::new(&ctx.key("missing"), "g", "a"))
            .await
            .unwrap(),
        ConsumerRemoval::Missing
    );
    let names: Vec<_> = backend
        .consumers(&key, "g")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["a"]);
    assert_eq!(pending_ids(&pending_all(&backend, &key, "g").await), ids);

    assert_eq!(backend.ack(ack(&key, &ids)).await.unwrap(), 2);
    assert_eq!(
        backend
            .delete_consumer(ConsumerRef::new(&key, "g", "a"))
            .await
            .unwrap(),
        ConsumerRemoval::Deleted
    );
    assert!(backend.consumers(&key, "g").await.unwrap().is_empty());
    assert_eq!(backend.groups(&key).await.unwrap()[0].consumers, 0);
}

/// `ack` with `delete` acknowledges and deletes the entries; the others stay.
pub async fn ack_with_delete_removes_entries(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    group_g(&backend, &key).await;
    let ids = add_n(&backend, &key, 3).await;
    read(&backend, &key, "a", 10).await.unwrap();
    assert_eq!(
        backend
            .ack(ack(&key, &ids[..2]).deleting(true))
            .await
            .unwrap(),
        2
    );
    assert_eq!(backend.len(&key).await.unwrap(), 1);
    let left: Vec<EntryId> = entries(&backend, &key)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, ids[2..]);
    assert_eq!(
        pending_ids(&pending_all(&backend, &key, "g").await),
        ids[2..]
    );
}

/// A group read returns at most `count` entries in total over its keys, and
/// shares them fairly: each key gets its share, what one key cannot fill
/// goes to the others, and the remainder goes to the keys that had least,
/// the first listed first.
pub async fn read_count_is_shared_fairly(ctx: &TestContext) {
    let backend = ctx.backend();
    let (a, b, c) = (ctx.key("a"), ctx.key("b"), ctx.key("c"));
    for (key, n) in [(&a, 10), (&b, 10), (&c, 1)] {
        group_g(&backend, key).await;
        add_n(&backend, key, n).await;
    }
    let keys = [a.clone(), b.clone(), c.clone()];
    let per_key = |replies: &[KeyEntries]| -> Vec<(String, usize)> {
        replies
            .iter()
            .map(|r| (r.key.clone(), r.entries.len()))
            .collect()
    };
    // 7 over 3: c has only 1, so its share goes to a and b evenly.
    let got = backend
        .read_group(ReadGroup::new("g", "x", &keys, 7))
        .await
        .unwrap();
    assert_eq!(
        per_key(&got),
        [(a.clone(), 3), (b.clone(), 3), (c.clone(), 1)]
    );
    // 3 over 3 with c empty now: the first listed gets the remainder.
    let got = backend
        .read_group(ReadGroup::new("g", "x", &keys, 3))
        .await
        .unwrap();
    assert_eq!(per_key(&got), [(a.clone(), 2), (b.clone(), 1)]);
    let reordered = [keys[1].clone(), keys[0].clone()];
    let got = backend
        .read_group(ReadGroup::new("g", "x", &reordered, 1))
        .await
        .unwrap();
    assert_eq!(per_key(&got), [(b.clone(), 1)]);
    // More than there is: the rest, and no more.
    let got = backend
        .read_group(ReadGroup::new("g", "x", &keys, 100))
        .await
        .unwrap();
    let total: usize = got.iter().map(|r| r.entries.len()).sum();
    assert_eq!(total, 21 - 7 - 3 - 1);
}

/// A group created after an entry starts after it when the stream's
/// history reaches it, and from the beginning when it does not (the stream
/// was lost and written anew, so nothing in it was delivered before).
pub async fn create_group_after_id(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    let ids = add_n(&backend, &key, 3).await;
    let after = |id: &EntryId| StartAt::After(id.clone());
    assert!(
        backend
            .create_group(CreateGroup::new(&key, "g", after(&ids[0])))
            .await
            .unwrap()
    );
    let got = read(&backend, &key, "a", 10).await.unwrap();
    assert_eq!(entry_ids(&got), ids[1..]);

    // An id this stream never reached (it was given by another stream,
    // written later): as after a loss, the group starts at the beginning.
    let fresh = ctx.key("fresh");
    let written = add_n(&backend, &fresh, 2).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let later = add_n(&backend, &ctx.key("other"), 1).await;
    backend
        .create_group(CreateGroup::new(&fresh, "g", after(&later[0])))
        .await
        .unwrap();
    let got = read(&backend, &fresh, "a", 10).await.unwrap();
    assert_eq!(
        entry_ids(&got),
        written,
        "a stream written anew starts over"
    );
    assert!(
        !backend
            .create_group(CreateGroup::new(&key, "g", StartAt::Beginning))
            .await
            .unwrap(),
        "an existing group is kept"
    );
    assert!(backend.destroy_group(&key, "g").await.unwrap());
    assert!(!backend.destroy_group(&key, "g").await.unwrap());
    assert!(backend.groups(&key).await.unwrap().is_empty());
}

/// A probe write replaces whatever its key held (a stream, here) with a
/// short-lived value that other primitives refuse as a wrong type; once it
/// expires the key is gone, and can hold a stream again. A zero time to
/// live is taken as the shortest there is.
pub async fn write_probe_expires(ctx: &TestContext) {
    let b = ctx.backend();
    let fresh = ctx.key("probe-fresh");
    let over = ctx.key("probe-over-stream");
    b.add(Add::new(over.clone(), entry_fields(0)))
        .await
        .unwrap();
    for key in [&fresh, &over] {
        b.write_probe(Probe::new(key, "ready?", Duration::from_millis(300)))
            .await
            .unwrap();
        assert_err!(b.len(key).await, StreamError::Backend { .. });
    }
    // Writing again replaces the value and its expiry.
    b.write_probe(Probe::new(&fresh, "again", Duration::from_millis(300)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for key in [&fresh, &over] {
        assert_eq!(b.len(key).await.unwrap(), 0, "{key} expired");
        assert!(b.groups(key).await.unwrap().is_empty());
    }
    b.add(Add::new(fresh.clone(), entry_fields(1)))
        .await
        .unwrap();
    assert_eq!(b.len(&fresh).await.unwrap(), 1);
    let probe = ctx.keys().probe();
    b.write_probe(Probe::new(&probe, "zero", Duration::ZERO))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(b.len(&probe).await.unwrap(), 0);
}

/// `move_entries` makes each move on its own and reports each outcome in
/// order: a pending entry moves (its copy written, the original
/// acknowledged), an acknowledged one is `NotPending`, one held by another
/// consumer is `OwnedBy`, and the refused ones write nothing.
pub async fn move_entries_report_each_outcome(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    let target = ctx.key("dead");
    let schedule = ctx.keys().retry_schedule("s", "g");
    group_g(&backend, &key).await;
    let ids = add_n(&backend, &key, 4).await;
    read(&backend, &key, "a", 10).await.unwrap();
    assert_eq!(backend.ack(ack(&key, &ids[1..2])).await.unwrap(), 1);
    let to_stream = |id: &EntryId, n: &str| {
        let target = MoveTarget::Stream {
            key: target.clone(),
            fields: fields(&[("copy", n.as_bytes())]),
            trim: Vec::new(),
        };
        Move::new(key.clone(), "g", id.clone(), target).fenced("a")
    };
    let to_schedule = Move::new(
        key.clone(),
        "g",
        ids[3].clone(),
        MoveTarget::Schedule {
            key: schedule.clone(),
            fields: fields(&[("copy", b"3")]),
            delay: Duration::from_secs(60),
        },
    )
    .fenced("a");
    let outcomes = backend
        .move_entries(vec![
            to_stream(&ids[0], "0"),
            to_stream(&ids[1], "1"),
            to_stream(&ids[2], "2").fenced("b"),
            to_schedule,
        ])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 4);
    let mut outcomes = outcomes.into_iter().map(Result::unwrap);
    let Some(MoveOutcome::Moved {
        new_id: Some(new_id),
    }) = outcomes.next()
    else {
        panic!("the first move is made, with the copy's id");
    };
    assert_eq!(outcomes.next(), Some(MoveOutcome::NotPending));
    assert_eq!(outcomes.next(), Some(MoveOutcome::OwnedBy("a".to_owned())));
    assert_eq!(outcomes.next(), Some(MoveOutcome::Moved { new_id: None }));

    let copies = entries(&backend, &target).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].id, new_id);
    assert_eq!(copies[0].fields, fields(&[("copy", b"0")]));
    assert_eq!(backend.schedule_len(&schedule).await.unwrap(), 1);
    assert_eq!(
        pending_ids(&pending_all(&backend, &key, "g").await),
        [ids[2].clone()]
    );
    assert!(backend.move_entries(Vec::new()).await.unwrap().is_empty());
}
