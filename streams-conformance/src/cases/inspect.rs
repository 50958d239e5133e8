//! Looking without touching: streams, pending entries, reads without a
//! group, and a group's view of entries.

use std::time::Duration;

use streams_core::{
    ConsumerGroupConfig, EntryState, GroupStart, PeekQuery, PendingFilter, RetryOptions,
    StreamError,
};

use crate::assert_err;
use crate::support::{TestContext, ids, read_n, read_now, send_n};

const WAIT: Duration = Duration::from_secs(5);

/// `list_streams` lists the streams of the namespace with their lengths
/// and groups, and none of the keys the library keeps for itself (retry
/// schedules and ready streams, the dead-letter stream, the registry).
pub async fn list_streams_hides_internal_keys(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s1", "s2"]).await;
    send_n(&a, "s1", 2).await;
    send_n(&a, "s2", 1).await;
    send_n(&a, "plain", 1).await;
    let got = read_n(&a, "g", 3, WAIT).await;
    assert!(a.retry_message(&got[0]).await.unwrap());
    a.send_to_dlq(&got[1], "bad", Some("g")).await.unwrap();
    let streams = a.list_streams().await.unwrap();
    let seen: Vec<(&str, u64, Vec<String>)> = streams
        .iter()
        .map(|s| (s.name.as_str(), s.length, s.groups.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("plain", 1, vec![]),
            ("s1", 2, vec!["g".to_owned()]),
            ("s2", 1, vec!["g".to_owned()]),
        ]
    );
}

/// `list_pending` lists a group's pending entries over its streams and
/// retries, with holder, deliveries and idle time, filtered by consumer,
/// stream and idle time, up to a limit.
pub async fn list_pending_shows_holders(ctx: &TestContext) {
    let a = ctx.manager("a");
    let b = ctx.second_manager("b").await;
    ctx.create_group(&a, "g", &["s1", "s2"]).await;
    send_n(&a, "s1", 2).await;
    send_n(&a, "s2", 1).await;
    let mine = a
        .read_messages("g", Some(2), Some(Duration::from_millis(100)))
        .await
        .unwrap();
    let theirs = read_n(&b, "g", 1, WAIT).await;
    assert_eq!(mine.len(), 2);
    let all = a.list_pending(&PendingFilter::new("g")).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|p| p.deliveries == 1 && !p.retry));
    for msg in &mine {
        // Ids are per stream: two streams may have the same one.
        let p = all
            .iter()
            .find(|p| p.id == msg.id && p.stream == msg.stream)
            .unwrap();
        assert_eq!(p.consumer, "a");
    }
    let of_b = a
        .list_pending(&PendingFilter::new("g").with_consumer("b"))
        .await
        .unwrap();
    assert_eq!(
        of_b.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        ids(&theirs)
    );
    let in_s2 = a
        .list_pending(&PendingFilter::new("g").with_stream("s2"))
        .await
        .unwrap();
    assert_eq!(in_s2.len(), 1);
    assert_eq!(in_s2[0].stream, "s2");
    assert_eq!(
        a.list_pending(&PendingFilter::new("g").with_limit(1))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        a.list_pending(&PendingFilter::new("g").idle_at_least(Duration::from_secs(3600)))
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        a.retry_with(&mine[0], RetryOptions::new().with_delay(Duration::ZERO))
            .await
            .unwrap()
    );
    let copy = read_n(&a, "g", 1, WAIT).await.remove(0);
    let now = a
        .list_pending(&PendingFilter::new("g").with_consumer("a"))
        .await
        .unwrap();
    let retry = now
        .iter()
        .find(|p| p.retry)
        .expect("the retry copy is pending");
    assert_eq!(
        (retry.id.as_str(), retry.stream.as_str()),
        (copy.id.as_str(), mine[0].stream.as_str())
    );

    assert_err!(
        a.list_pending(&PendingFilter::new("nope")).await,
        StreamError::GroupNotFound { .. }
    );
    assert_err!(
        a.list_pending(&PendingFilter::new("g").with_limit(0)).await,
        StreamError::Config { .. }
    );
    assert_err!(
        a.list_pending(&PendingFilter::new("g").with_stream("other"))
            .await,
        StreamError::Config { .. }
    );
}

/// `peek_messages` reads entries without a group, oldest or newest first
/// and after an id, and delivers nothing: the group still gets them all.
pub async fn peek_reads_without_consuming(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 5).await;
    let all = a.peek_messages(&PeekQuery::new("s")).await.unwrap();
    assert_eq!(ids(&all), sent);
    assert_eq!(all[3].data["n"], 3);
    assert!(all.iter().all(|m| m.delivery.is_none() && m.mid.is_some()));
    let newest = a
        .peek_messages(&PeekQuery::new("s").with_count(2).newest_first())
        .await
        .unwrap();
    assert_eq!(ids(&newest), [sent[4].clone(), sent[3].clone()]);
    let after = a
        .peek_messages(&PeekQuery::new("s").after(sent[2].clone()))
        .await
        .unwrap();
    assert_eq!(ids(&after), sent[3..]);
    assert!(
        a.peek_messages(&PeekQuery::new("none"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(&read_n(&a, "g", 5, WAIT).await),
        sent,
        "nothing was delivered"
    );

    assert_err!(
        a.peek_messages(&PeekQuery::new("s").with_count(0)).await,
        StreamError::Config { .. }
    );
    assert_err!(
        a.peek_messages(&PeekQuery::new("bad name")).await,
        StreamError::InvalidName { .. }
    );
    assert_err!(
        a.peek_messages(&PeekQuery::new("s").after("x")).await,
        StreamError::InvalidId { .. }
    );
}

/// `group_view` tells, for entries of a stream in order, whether the group
/// has not delivered them yet, holds them pending (and where), or is done
/// with them (settled, or older than where the group started).
pub async fn group_view_tells_new_pending_done(ctx: &TestContext) {
    let a = ctx.manager("a");
    ctx.create_group(&a, "g", &["s"]).await;
    let sent = send_n(&a, "s", 6).await;
    let got = a
        .read_messages("g", Some(3), Some(Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(ids(&got), sent[..3]);
    a.acknowledge(&got[0], "g").await.unwrap();
    a.send_to_dlq(&got[2], "bad", Some("g")).await.unwrap();
    let view = a.group_view("g", "s", &sent).await.unwrap();
    assert_eq!(view[0], EntryState::Done);
    let EntryState::Pending {
        consumer,
        deliveries,
        ..
    } = &view[1]
    else {
        panic!("expected pending, got {:?}", view[1]);
    };
    assert_eq!((consumer.as_str(), *deliveries), ("a", 1));
    assert_eq!(
        view[2..],
        [
            EntryState::Done,
            EntryState::New,
            EntryState::New,
            EntryState::New
        ]
    );
    assert_eq!(
        a.group_view("g", "s", &sent[4..]).await.unwrap(),
        vec![EntryState::New; 2]
    );
    assert!(a.group_view("g", "s", &[]).await.unwrap().is_empty());

    ctx.create_group(&a, "fresh", &["s"]).await;
    assert_eq!(
        a.group_view("fresh", "s", &sent).await.unwrap(),
        vec![EntryState::New; 6]
    );
    a.create_consumer_group(&ConsumerGroupConfig::new("late", ["s"]).with_start(GroupStart::New))
        .await
        .unwrap();
    assert_eq!(
        a.group_view("late", "s", &sent).await.unwrap(),
        vec![EntryState::Done; 6]
    );
    assert!(read_now(&a, "late").await.is_empty());

    assert_err!(
        a.group_view("g", "other", &sent).await,
        StreamError::Config { .. }
    );
    assert_err!(
        a.group_view("nope", "s", &sent).await,
        StreamError::GroupNotFound { .. }
    );
}
