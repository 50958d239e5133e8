//! `subscribe`: a group's messages as a stream.

use std::time::Duration;

use futures::StreamExt;
use streams_core::{StreamError, StreamMessage};

use crate::support::{TestContext, eventually, ids, send_n, within};

/// A subscription yields the group's messages in order as they are sent,
/// each to be acknowledged, and ends (without yielding anything else) soon
/// after the manager is closed, even while a read is in flight.
pub async fn subscribe_yields_messages_and_ends_on_close(ctx: &TestContext) {
    let m = ctx.second_manager("a").await;
    ctx.create_group(&m, "g", &["s"]).await;
    let producer = ctx.manager("p");
    let first = send_n(&producer, "s", 2).await;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut subscription = m.subscribe("g");
    let pump = tokio::spawn(async move {
        while let Some(item) = subscription.next().await {
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    let mut got: Vec<StreamMessage> = Vec::new();
    for _ in 0..2 {
        let item = within("subscription item", Duration::from_secs(5), rx.recv())
            .await
            .expect("the subscription ended early");
        got.push(item.unwrap());
    }
    assert_eq!(ids(&got), first);
    let later = send_n(&producer, "s", 1).await;
    let item = within("subscription item", Duration::from_secs(5), rx.recv())
        .await
        .expect("the subscription ended early");
    got.push(item.unwrap());
    assert_eq!(ids(&got[2..]), later);
    assert_eq!(m.acknowledge_many(&got, "g").await.unwrap(), 3);

    // Let the subscription block in a read, then close.
    tokio::time::sleep(Duration::from_millis(30)).await;
    m.close().await.unwrap();
    let rest = within("subscription end", Duration::from_secs(3), async {
        let mut rest = Vec::new();
        while let Some(item) = rx.recv().await {
            rest.push(item);
        }
        rest
    })
    .await;
    assert!(rest.is_empty(), "after close: {rest:?}");
    within("pump task", Duration::from_secs(1), pump)
        .await
        .unwrap();
}

/// Dropping a subscription hands back the messages it fetched but never
/// yielded: they become claimable by another consumer at once, while the
/// yielded one stays with its consumer.
pub async fn subscribe_hands_back_unyielded_messages_on_drop(ctx: &TestContext) {
    let m = ctx.manager("a");
    m.create_consumer_group(&ctx.group("g", &["s"]).with_batch_size(10))
        .await
        .unwrap();
    let sent = send_n(&m, "s", 5).await;
    let mut subscription = m.subscribe("g");
    let first = within("first item", Duration::from_secs(5), subscription.next())
        .await
        .expect("an item")
        .unwrap();
    assert_eq!(first.id, sent[0]);
    drop(subscription);

    let b = ctx.second_manager("b").await;
    let claimed: Vec<StreamMessage> = eventually("handed back", Duration::from_secs(3), || async {
        let c = b
            .claim_pending_messages("g", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        (!c.is_empty()).then_some(c)
    })
    .await;
    assert_eq!(ids(&claimed), sent[1..]);
    assert!(m.acknowledge(&first, "g").await.unwrap(), "still a's");
}

/// A subscription to an unknown group yields `GroupNotFound` once and ends.
pub async fn subscribe_to_unknown_group_ends_with_error(ctx: &TestContext) {
    let m = ctx.manager("a");
    let mut subscription = m.subscribe("nope");
    let first = within("first item", Duration::from_secs(3), subscription.next()).await;
    crate::assert_err!(
        first.expect("an error item"),
        StreamError::GroupNotFound { ref group } if group == "nope"
    );
    let end = within("end", Duration::from_secs(3), subscription.next()).await;
    assert!(end.is_none(), "{end:?}");
}
