//! Acknowledging.

use std::time::Duration;

use streams_core::EntryId;
use streams_core::backend::Ack;

use crate::support::{TestContext, ids, pending_all, read_n, send_n};

/// A read message is pending for its consumer (one delivery) until it is
/// acknowledged; the acknowledgement removes exactly that entry.
pub async fn ack_removes_from_pending(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    let sent = send_n(&m, "s", 2).await;
    let got = read_n(&m, "g", 2, Duration::from_secs(5)).await;
    let backend = ctx.backend();
    let key = ctx.key("s");
    let pending = pending_all(&backend, &key, "g").await;
    assert_eq!(
        pending.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        sent
    );
    assert!(
        pending
            .iter()
            .all(|p| p.consumer == "a" && p.deliveries == 1)
    );
    let info = backend.groups(&key).await.unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].pending, 2);
    assert_eq!(info[0].last_delivered.as_ref().unwrap(), &sent[1]);

    assert!(m.acknowledge(&got[0], "g").await.unwrap());
    let pending = pending_all(&backend, &key, "g").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, sent[1]);
    assert_eq!(backend.groups(&key).await.unwrap()[0].pending, 1);
    // The entry itself stays in the stream for other groups.
    assert_eq!(backend.len(&key).await.unwrap(), 2);
    assert_eq!(m.get_stats().await.unwrap().messages_acknowledged, 1);
}

/// Acknowledging a message a second time returns `false` and counts nothing;
/// so does the backend's `ack` of an unknown id, key or group.
pub async fn ack_twice_returns_false(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s"]).await;
    send_n(&m, "s", 1).await;
    let got = read_n(&m, "g", 1, Duration::from_secs(5)).await;
    assert!(m.acknowledge(&got[0], "g").await.unwrap());
    assert!(!m.acknowledge(&got[0], "g").await.unwrap());
    assert_eq!(m.get_stats().await.unwrap().messages_acknowledged, 1);

    let backend = ctx.backend();
    let id = vec![EntryId::from(got[0].id.as_str())];
    let (key, missing) = (ctx.key("s"), ctx.key("missing"));
    assert_eq!(backend.ack(Ack::new(&key, "g", &id)).await.unwrap(), 0);
    assert_eq!(backend.ack(Ack::new(&key, "nope", &id)).await.unwrap(), 0);
    assert_eq!(backend.ack(Ack::new(&missing, "g", &id)).await.unwrap(), 0);
    let unknown = vec![EntryId::from("1-1")];
    assert_eq!(backend.ack(Ack::new(&key, "g", &unknown)).await.unwrap(), 0);
}

/// `acknowledge_many` acknowledges messages of several streams at once and
/// returns how many were pending: already acknowledged ones do not count.
pub async fn acknowledge_many_counts(ctx: &TestContext) {
    let m = ctx.manager("a");
    ctx.create_group(&m, "g", &["s1", "s2"]).await;
    let mut sent = send_n(&m, "s1", 3).await;
    sent.extend(send_n(&m, "s2", 2).await);
    let got = read_n(&m, "g", 5, Duration::from_secs(5)).await;
    let mut got_ids = ids(&got);
    got_ids.sort();
    sent.sort();
    assert_eq!(got_ids, sent);

    assert!(m.acknowledge(&got[0], "g").await.unwrap());
    assert_eq!(m.acknowledge_many(&got, "g").await.unwrap(), 4);
    assert_eq!(m.acknowledge_many(&got, "g").await.unwrap(), 0);
    assert_eq!(m.acknowledge_many(&[], "g").await.unwrap(), 0);
    assert!(
        pending_all(&ctx.backend(), &ctx.key("s1"), "g")
            .await
            .is_empty()
    );
    assert!(
        pending_all(&ctx.backend(), &ctx.key("s2"), "g")
            .await
            .is_empty()
    );
    assert_eq!(m.get_stats().await.unwrap().messages_acknowledged, 5);
}
