//! Trimming and stream lengths.

use serde_json::json;
use streams_core::backend::{Add, CreateGroup, StartAt, Trim};

use crate::support::{TestContext, entries, fields, trim_exact};

/// Sending with `max_len` keeps the stream at about that length: never
/// below it, and at most one stream node (100 entries) above it, however
/// many messages are sent; the newest entries are the ones kept.
pub async fn send_trims_to_max_len(ctx: &TestContext) {
    let m = ctx.manager("a");
    let mut last = Vec::new();
    for i in 0..400 {
        let id = m
            .send_message("s", json!({"i": i}), Some(50))
            .await
            .unwrap();
        last.push(id);
    }
    let backend = ctx.backend();
    let len = backend.len(&ctx.key("s")).await.unwrap();
    assert!((50..=150).contains(&len), "stream holds {len} entries");
    let kept: Vec<String> = entries(&backend, &ctx.key("s"))
        .await
        .into_iter()
        .map(|e| e.id.into_string())
        .collect();
    assert_eq!(kept.len() as u64, len);
    assert_eq!(
        kept,
        last[400 - kept.len()..],
        "the newest entries are kept"
    );

    // A batch trims too.
    let items = (0..300).map(|i| json!({"b": i})).collect();
    let ids = m.send_batch("s", items, Some(30)).await.unwrap();
    let len = backend.len(&ctx.key("s")).await.unwrap();
    assert!((30..=130).contains(&len), "stream holds {len} entries");
    let kept = entries(&backend, &ctx.key("s")).await;
    assert_eq!(kept.last().unwrap().id, *ids.last().unwrap());

    // Without max_len (and no default) nothing is trimmed.
    let before = backend.len(&ctx.key("s")).await.unwrap();
    for i in 0..20 {
        m.send_message("s", json!({"more": i}), None).await.unwrap();
    }
    assert_eq!(backend.len(&ctx.key("s")).await.unwrap(), before + 20);
}

/// The backend's exact trims: `MaxLen` keeps exactly the newest `len`
/// entries and reports how many it removed; an add's trims apply after
/// adding; trimming a missing stream removes nothing.
pub async fn trim_by_max_len(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            backend
                .add(Add::new(
                    key.clone(),
                    fields(&[("i", i.to_string().as_bytes())]),
                ))
                .await
                .unwrap(),
        );
    }
    let removed = trim_exact(&backend, &key, 10).await;
    assert_eq!(removed, 20);
    let kept: Vec<_> = entries(&backend, &key)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(kept, ids[20..]);
    assert_eq!(
        backend
            .trim(
                &key,
                Trim::MaxLen {
                    len: 10,
                    approx: false
                }
            )
            .await
            .unwrap(),
        0
    );

    let id = backend
        .add(
            Add::new(key.clone(), fields(&[("i", b"last")])).with_trim(Trim::MaxLen {
                len: 3,
                approx: false,
            }),
        )
        .await
        .unwrap();
    let kept: Vec<_> = entries(&backend, &key)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(kept, [ids[28].clone(), ids[29].clone(), id]);
    assert_eq!(
        backend
            .trim(
                &ctx.key("missing"),
                Trim::MaxLen {
                    len: 1,
                    approx: false
                }
            )
            .await
            .unwrap(),
        0
    );
}

/// `len` counts the entries of a stream: 0 for a missing one, and it
/// follows adds and batch adds; creating a group adds nothing.
pub async fn stream_len_counts_entries(ctx: &TestContext) {
    let backend = ctx.backend();
    let key = ctx.key("s");
    assert_eq!(backend.len(&key).await.unwrap(), 0);
    backend
        .add(Add::new(key.clone(), fields(&[("k", b"v")])))
        .await
        .unwrap();
    assert_eq!(backend.len(&key).await.unwrap(), 1);
    let adds = (0..7)
        .map(|_| Add::new(key.clone(), fields(&[("k", b"v")])))
        .collect();
    let ids = backend.add_batch(adds).await.unwrap();
    assert_eq!(ids.len(), 7);
    assert_eq!(backend.len(&key).await.unwrap(), 8);
    backend
        .create_group(CreateGroup::new(&key, "g", StartAt::Beginning))
        .await
        .unwrap();
    assert_eq!(backend.len(&key).await.unwrap(), 8);
    assert_eq!(backend.len(&ctx.key("other")).await.unwrap(), 0);
}
