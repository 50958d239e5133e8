//! Backend primitives over whole entries, without groups: reverse ranges,
//! the atomic transfer, deletion by id, and listing stream keys.

use std::ops::Bound;

use streams_core::backend::{Add, CreateGroup, EntryId, RangeQuery, ReadGroup, StartAt};
use streams_core::backend::{Transfer, TransferOutcome};
use streams_core::{Entry, Fields, StreamError};

use crate::assert_err;
use crate::support::{DynBackend, TestContext, entries, fields, pending_all};

fn entry_fields(i: usize) -> Fields {
    fields(&[("i", i.to_string().as_bytes())])
}

async fn add_n(backend: &DynBackend, key: &str, n: usize) -> Vec<EntryId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(backend.add(Add::new(key, entry_fields(i))).await.unwrap());
    }
    ids
}

/// `range` with `newest_first` returns the last `count` entries within the
/// bounds, newest first (`XREVRANGE`); a bound the backend cannot read is
/// `InvalidId`.
pub async fn range_reads_newest_first(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    let ids = add_n(&backend, &key, 5).await;
    let expected: Vec<Entry> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Entry::new(id.clone(), entry_fields(i)))
        .collect();
    let newest = backend
        .range(RangeQuery::new(&key, 2).newest_first())
        .await
        .unwrap();
    assert_eq!(newest, [expected[4].clone(), expected[3].clone()]);
    let all = backend
        .range(RangeQuery::new(&key, 100).newest_first())
        .await
        .unwrap();
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(all, reversed);
    let within = RangeQuery::new(&key, 10)
        .within(
            Bound::Excluded(ids[0].clone()),
            Bound::Included(ids[2].clone()),
        )
        .newest_first();
    assert_eq!(
        backend.range(within).await.unwrap(),
        [expected[2].clone(), expected[1].clone()]
    );
    let missing = ctx.key("missing");
    assert!(
        backend
            .range(RangeQuery::new(&missing, 10).newest_first())
            .await
            .unwrap()
            .is_empty()
    );
    for bad in ["-", "+", "x", "1-x", ""] {
        let query =
            RangeQuery::new(&key, 10).within(Bound::Excluded(EntryId::from(bad)), Bound::Unbounded);
        assert_err!(backend.range(query).await, StreamError::InvalidId { ref id, .. } if id == bad);
    }
}

/// `transfer` adds the copy to the target and deletes the source entry in
/// one step, only if the source entry exists: a second transfer of the same
/// entry, or one from a missing stream, is `Missing` and writes nothing. An
/// unreadable id is `InvalidId`; a target of another type fails and leaves
/// the source entry where it was.
pub async fn transfer_moves_only_existing_entries(ctx: &TestContext) {
    let backend = ctx.backend();
    let (source, target) = (ctx.key("dlq"), ctx.key("ready"));
    let ids = add_n(&backend, &source, 3).await;
    let copy = fields(&[
        ("data", b"{\"n\":1}"),
        ("replayed_from", ids[1].as_str().as_bytes()),
    ]);
    let moved = backend
        .transfer(Transfer::new(
            &source,
            ids[1].clone(),
            &target,
            copy.clone(),
        ))
        .await
        .unwrap();
    let TransferOutcome::Transferred { new_id } = moved else {
        panic!("expected a transfer, got {moved:?}");
    };
    assert_eq!(
        entries(&backend, &target).await,
        [Entry::new(new_id, copy.clone())]
    );
    let left: Vec<EntryId> = entries(&backend, &source)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, [ids[0].clone(), ids[2].clone()]);

    let again = backend
        .transfer(Transfer::new(
            &source,
            ids[1].clone(),
            &target,
            copy.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(again, TransferOutcome::Missing);
    let nowhere = backend
        .transfer(Transfer::new(
            ctx.key("none"),
            ids[0].clone(),
            &target,
            copy.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(nowhere, TransferOutcome::Missing);
    assert_eq!(backend.len(&target).await.unwrap(), 1);
    assert_eq!(backend.len(&ctx.key("none")).await.unwrap(), 0);

    assert_err!(
        backend
            .transfer(Transfer::new(
                &source,
                EntryId::from("x-1"),
                &target,
                copy.clone()
            ))
            .await,
        StreamError::InvalidId { .. }
    );
    let hash = ctx.key("h");
    backend.registry_put(&hash, "f", "v").await.unwrap();
    assert!(
        backend
            .transfer(Transfer::new(&source, ids[0].clone(), &hash, copy))
            .await
            .is_err()
    );
    assert_eq!(
        backend.len(&source).await.unwrap(),
        2,
        "a failed transfer deletes nothing"
    );
}

/// `delete_entries` deletes the given ids and returns those that existed,
/// in order (each once); it leaves other entries and every pending list
/// alone, deletes nothing from a missing stream, and refuses a list with an
/// unreadable id (`InvalidId`) without deleting any of it.
pub async fn delete_entries_removes_only_given_ids(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    backend
        .create_group(CreateGroup::new(&key, "g", StartAt::Beginning))
        .await
        .unwrap();
    let ids = add_n(&backend, &key, 4).await;
    let keys = [key.clone()];
    backend
        .read_group(ReadGroup::new("g", "c", &keys, 4))
        .await
        .unwrap();
    let absent = EntryId::from("1-1");
    let asked = [ids[1].clone(), ids[3].clone(), ids[1].clone(), absent];
    let deleted = backend.delete_entries(&key, &asked).await.unwrap();
    assert_eq!(deleted, [ids[1].clone(), ids[3].clone()]);
    let left: Vec<EntryId> = entries(&backend, &key)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, [ids[0].clone(), ids[2].clone()]);
    assert_eq!(
        pending_all(&backend, &key, "g").await.len(),
        4,
        "pending lists stay"
    );

    assert!(
        backend
            .delete_entries(&ctx.key("none"), &[ids[0].clone()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(backend.delete_entries(&key, &[]).await.unwrap().is_empty());
    assert_err!(
        backend
            .delete_entries(&key, &[ids[0].clone(), EntryId::from("+")])
            .await,
        StreamError::InvalidId { .. }
    );
    assert_eq!(backend.len(&key).await.unwrap(), 2);
}

/// `stream_keys` lists the keys holding streams that start with a prefix,
/// sorted, and nothing else: keys of other types are left out, and the
/// prefix is taken literally (no glob characters).
pub async fn stream_keys_lists_streams_under_prefix(ctx: &TestContext) {
    let backend = ctx.backend();
    let ns = format!("{}:", ctx.namespace);
    let names = ["b", "a", "x*y", "xzy", "a:b"];
    for name in names {
        backend
            .add(Add::new(ctx.key(name), entry_fields(0)))
            .await
            .unwrap();
    }
    backend
        .registry_put(&ctx.key("hash"), "f", "v")
        .await
        .unwrap();
    let mut expected: Vec<String> = names.iter().map(|n| ctx.key(n)).collect();
    expected.sort();
    assert_eq!(backend.stream_keys(&ns).await.unwrap(), expected);
    assert_eq!(
        backend.stream_keys(&format!("{ns}{{x*")).await.unwrap(),
        [ctx.key("x*y")]
    );
    let mut under_a = vec![ctx.key("a"), ctx.key("a:b")];
    under_a.sort();
    assert_eq!(
        backend.stream_keys(&format!("{ns}{{a")).await.unwrap(),
        under_a
    );
    assert!(
        backend
            .stream_keys(&format!("{ns}{{nothing"))
            .await
            .unwrap()
            .is_empty()
    );
}
