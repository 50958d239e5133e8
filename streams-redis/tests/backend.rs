//! The Redis-specific behaviour of each primitive, below the manager: reply
//! shapes, scripts, fencing, server-clock trims, and the connection model.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Ctx, fields, run};
use streams_core::StreamError;
use streams_core::backend::{
    Ack, Add, AutoClaim, ConsumerRef, ConsumerRemoval, CreateGroup, Cursor, EntryId, GroupRegistry,
    KeyEntries, Lease, Move, MoveOutcome, MoveTarget, PendingQuery, RangeQuery, ReadGroup,
    ScheduleKeys, StartAt, StreamBackend, Trim,
};
use streams_redis::{RedisBackend, RedisConfig};

fn add(key: &str, pairs: &[(&str, &str)], trim: Vec<Trim>) -> Add {
    trim.into_iter()
        .fold(Add::new(key, fields(pairs)), Add::with_trim)
}

async fn read(
    b: &dyn StreamBackend,
    group: &str,
    consumer: &str,
    keys: &[String],
    block: Option<Duration>,
) -> Result<Vec<KeyEntries>, StreamError> {
    b.read_group(ReadGroup::new(group, consumer, keys, 100).with_block(block))
        .await
}

fn new(key: &str) -> Vec<String> {
    vec![key.to_owned()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_info_and_ping() {
    run("info", |c: Ctx| async move {
        let info = c.backend.server_info().await.unwrap();
        assert_eq!(info.backend, "redis");
        let major: u32 = info.version.split('.').next().unwrap().parse().unwrap();
        assert!(major >= 6, "{info:?}");
        c.backend.ping().await.unwrap();
        assert_eq!(c.backend.name(), "redis");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_adds_trims_and_ranges() {
    run("basics", |c: Ctx| async move {
        let b = &c.backend;
        let s = c.key("s");
        assert!(
            b.create_group(CreateGroup::new(&s, "g", StartAt::Beginning))
                .await
                .unwrap()
        );
        assert!(
            !b.create_group(CreateGroup::new(&s, "g", StartAt::Beginning))
                .await
                .unwrap()
        );
        let mut ids = Vec::new();
        for i in 0..10 {
            let n = i.to_string();
            ids.push(b.add(add(&s, &[("n", &n)], vec![])).await.unwrap());
        }
        let exact = Trim::MaxLen {
            len: 4,
            approx: false,
        };
        b.add(add(&s, &[("n", "10")], vec![exact])).await.unwrap();
        assert_eq!(b.len(&s).await.unwrap(), 4);
        let all = b.range(RangeQuery::new(&s, 100)).await.unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].fields, fields(&[("n", "10")]));
        assert_eq!(b.range(RangeQuery::new(&s, 2)).await.unwrap().len(), 2);
        assert_eq!(
            b.trim(
                &s,
                Trim::MaxLen {
                    len: 1,
                    approx: false
                }
            )
            .await
            .unwrap(),
            3
        );
        assert_eq!(b.len(&c.key("missing")).await.unwrap(), 0);
        assert!(
            b.range(RangeQuery::new(&c.key("missing"), 10))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            b.trim(
                &c.key("missing"),
                Trim::MaxLen {
                    len: 1,
                    approx: true
                }
            )
            .await
            .unwrap(),
            0
        );

        let groups = b.groups(&s).await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].name, "g");
        assert_eq!(groups[0].pending, 0);
        assert!(b.groups(&c.key("missing")).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_trims_by_server_clock() {
    run("maxage", |c: Ctx| async move {
        let b = &c.backend;
        let s = c.key("s");
        for _ in 0..3 {
            b.add(add(&s, &[("old", "1")], vec![])).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
        let age = Trim::MaxAge {
            age: Duration::from_millis(60),
            approx: false,
        };
        let both = vec![
            Trim::MaxLen {
                len: 100,
                approx: true,
            },
            age,
        ];
        b.add(add(&s, &[("new", "1")], both)).await.unwrap();
        let left = b.range(RangeQuery::new(&s, 10)).await.unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].fields, fields(&[("new", "1")]));

        b.add(add(&s, &[("x", "1")], vec![])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(b.trim(&s, age).await.unwrap(), 2);
        assert_eq!(b.trim(&c.key("missing"), age).await.unwrap(), 0);
        // A huge age keeps everything (no MINID below zero).
        b.add(add(&s, &[("y", "1")], vec![])).await.unwrap();
        let forever = Trim::MaxAge {
            age: Duration::from_secs(u64::MAX / 4),
            approx: false,
        };
        assert_eq!(b.trim(&s, forever).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_order_with_and_without_scripts() {
    run("batch", |c: Ctx| async move {
        let b = &c.backend;
        let s = c.key("s");
        let plain: Vec<Add> = (0..50)
            .map(|i| {
                add(
                    &s,
                    &[("n", &i.to_string())],
                    vec![Trim::MaxLen {
                        len: 1000,
                        approx: true,
                    }],
                )
            })
            .collect();
        let ids = b.add_batch(plain).await.unwrap();
        assert_eq!(ids.len(), 50);
        let aged: Vec<Add> = (50..60)
            .map(|i| {
                add(
                    &s,
                    &[("n", &i.to_string())],
                    vec![Trim::MaxAge {
                        age: Duration::from_secs(60),
                        approx: true,
                    }],
                )
            })
            .collect();
        let more = b.add_batch(aged).await.unwrap();
        let all = b.range(RangeQuery::new(&s, 1000)).await.unwrap();
        let got: Vec<&EntryId> = all.iter().map(|e| &e.id).collect();
        let want: Vec<&EntryId> = ids.iter().chain(&more).collect();
        assert_eq!(got, want);
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.fields, fields(&[("n", &i.to_string())]));
        }
        assert!(b.add_batch(Vec::new()).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_redeliveries_deleted_entries_and_nogroup() {
    run("read", |c: Ctx| async move {
        let b = &c.backend;
        let (s1, s2) = (c.key("s1"), c.key("s2"));
        b.create_group(CreateGroup::new(&s1, "g", StartAt::Beginning))
            .await
            .unwrap();
        b.create_group(CreateGroup::new(&s2, "g", StartAt::Beginning))
            .await
            .unwrap();
        let a = b.add(add(&s1, &[("k", "a")], vec![])).await.unwrap();
        let d = b.add(add(&s1, &[("k", "d")], vec![])).await.unwrap();
        let keys = vec![s1.clone(), s2.clone()];
        let got = read(b, "g", "c1", &keys, None).await.unwrap();
        assert_eq!(got.len(), 1, "keys without entries are left out");
        assert_eq!(got[0].key, s1);
        assert_eq!(got[0].entries.len(), 2);

        // Deleted while pending: a redelivery reports the id.
        b.ack(Ack::new(&c.key("nothing"), "g", std::slice::from_ref(&a)))
            .await
            .unwrap();
        let mut xdel = redis::cmd("XDEL");
        xdel.arg(&s1).arg(d.as_str());
        let client = redis::Client::open(c.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: i64 = xdel.query_async(&mut conn).await.unwrap();
        let held = [a.clone(), d.clone()];
        let got = b
            .redeliver(Lease::new(&s1, "g", "c1", &held))
            .await
            .unwrap();
        assert_eq!(got.entries.len(), 1);
        assert_eq!(got.entries[0].entry.id, a);
        assert_eq!(got.entries[0].deliveries, 2);
        assert_eq!(got.deleted, vec![d.clone()]);

        // NOGROUP at once, blocking or not, naming the key.
        let missing = vec![s1.clone(), c.key("nokey")];
        let started = Instant::now();
        match read(b, "g", "c1", &missing, Some(Duration::from_secs(3))).await {
            Err(StreamError::NoGroup { stream, group }) => {
                assert_eq!(stream, c.key("nokey"));
                assert_eq!(group, "g");
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(
            read(b, "nogroup", "c1", &new(&s1), None).await,
            Err(StreamError::NoGroup { .. })
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_read_wakes_on_add_and_times_out_empty() {
    run("block", |c: Ctx| async move {
        let b = Arc::new(c.backend.clone());
        let s = c.key("s");
        b.create_group(CreateGroup::new(&s, "g", StartAt::End))
            .await
            .unwrap();
        let started = Instant::now();
        let got = read(&*b, "g", "c", &new(&s), Some(Duration::from_millis(700)))
            .await
            .unwrap();
        assert!(got.is_empty());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(650), "{waited:?}");

        let reader = {
            let (b, s) = (Arc::clone(&b), s.clone());
            tokio::spawn(async move {
                read(&*b, "g", "c", &new(&s), Some(Duration::from_secs(5))).await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = Instant::now();
        let id = b.add(add(&s, &[("k", "v")], vec![])).await.unwrap();
        assert!(
            sent.elapsed() < Duration::from_millis(100),
            "send waited {:?}",
            sent.elapsed()
        );
        let got = reader.await.unwrap().unwrap();
        assert_eq!(got[0].entries[0].entry.id, id);
        assert!(sent.elapsed() < Duration::from_secs(2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_claims_and_pending_details() {
    run("claim", |c: Ctx| async move {
        let b = &c.backend;
        let s = c.key("s");
        b.create_group(CreateGroup::new(&s, "g", StartAt::Beginning))
            .await
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                b.add(add(&s, &[("n", &i.to_string())], vec![]))
                    .await
                    .unwrap(),
            );
        }
        read(b, "g", "a", &new(&s), None).await.unwrap();
        let all = |consumer: Option<&'static str>, idle: Option<Duration>| {
            let mut q = PendingQuery::new(&s, "g", 100);
            if let Some(c) = consumer {
                q = q.of_consumer(c);
            }
            if let Some(i) = idle {
                q = q.idle_at_least(i);
            }
            q
        };
        let p = b.pending(all(None, None)).await.unwrap();
        assert_eq!(p.len(), 5);
        assert!(p.iter().all(|e| e.consumer == "a" && e.deliveries == 1));
        assert!(b.pending(all(Some("b"), None)).await.unwrap().is_empty());
        assert!(
            b.pending(all(None, Some(Duration::from_secs(60))))
                .await
                .unwrap()
                .is_empty()
        );

        // Not idle long enough: nothing claimed.
        let page = b
            .auto_claim(AutoClaim::new(&s, "g", "b", Duration::from_secs(60), 10))
            .await
            .unwrap();
        assert!(page.entries.is_empty());
        assert_eq!(page.next, None);

        // Trimmed while pending: reported as deleted by the claim.
        let mut xdel = redis::cmd("XDEL");
        xdel.arg(&s).arg(ids[1].as_str());
        let client = redis::Client::open(c.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: i64 = xdel.query_async(&mut conn).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;

        // Pages of two until the cursor is 0-0.
        let mut cursor: Option<Cursor> = None;
        let mut claimed = Vec::new();
        let mut deleted = Vec::new();
        loop {
            let page = b
                .auto_claim(
                    AutoClaim::new(&s, "g", "b", Duration::from_millis(10), 2).from_cursor(cursor),
                )
                .await
                .unwrap();
            claimed.extend(page.entries);
            deleted.extend(page.deleted);
            let Some(next) = page.next else { break };
            cursor = Some(next);
        }
        assert_eq!(deleted, vec![ids[1].clone()]);
        let claimed_ids: Vec<&EntryId> = claimed.iter().map(|e| &e.entry.id).collect();
        assert_eq!(claimed_ids, [&ids[0], &ids[2], &ids[3], &ids[4]]);
        assert!(claimed.iter().all(|e| e.deliveries == 2), "{claimed:?}");
        assert_eq!(claimed[1].entry.fields, fields(&[("n", "2")]));

        assert_eq!(b.ack(Ack::new(&s, "g", &ids)).await.unwrap(), 4);
        assert_eq!(b.ack(Ack::new(&s, "g", &ids)).await.unwrap(), 0);
        assert_eq!(
            b.ack(Ack::new(&c.key("missing"), "g", &ids)).await.unwrap(),
            0
        );
        assert_eq!(b.ack(Ack::new(&s, "nogroup", &ids)).await.unwrap(), 0);
        assert_eq!(
            b.ack(Ack::new(&s, "g", &[]).deleting(true)).await.unwrap(),
            0
        );
        let missing = c.key("missing");
        assert!(matches!(
            b.auto_claim(AutoClaim::new(&missing, "g", "b", Duration::ZERO, 10))
                .await,
            Err(StreamError::NoGroup { .. })
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_with_delete_removes_entries() {
    run("ackdel", |c: Ctx| async move {
        let b = &c.backend;
        let s = c.key("s");
        b.create_group(CreateGroup::new(&s, "g", StartAt::Beginning))
            .await
            .unwrap();
        let id = b.add(add(&s, &[("k", "v")], vec![])).await.unwrap();
        read(b, "g", "a", &new(&s), None).await.unwrap();
        assert_eq!(
            b.ack(Ack::new(&s, "g", std::slice::from_ref(&id)).deleting(true))
                .await
                .unwrap(),
            1
        );
        assert_eq!(b.len(&s).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_idle_is_fenced() {
    run("idle", |c: Ctx| async move {
        let b = &c.backend;
        let s = c.key("s");
        b.create_group(CreateGroup::new(&s, "g", StartAt::Beginning))
            .await
            .unwrap();
        let x = b.add(add(&s, &[("k", "x")], vec![])).await.unwrap();
        read(b, "g", "a", &new(&s), None).await.unwrap();
        let y = b.add(add(&s, &[("k", "y")], vec![])).await.unwrap();
        read(b, "g", "b", &new(&s), None).await.unwrap();
        let both = vec![x.clone(), y.clone(), EntryId::from("1-1")];
        assert_eq!(
            b.hand_back(Lease::new(&s, "g", "a", &both)).await.unwrap(),
            vec![x.clone()]
        );
        let page = b
            .auto_claim(AutoClaim::new(&s, "g", "c", Duration::from_secs(60), 10))
            .await
            .unwrap();
        assert_eq!(
            page.entries.len(),
            1,
            "only the handed-back entry is claimable"
        );
        assert_eq!(page.entries[0].entry.id, x);
        assert_eq!(
            page.entries[0].deliveries, 1,
            "the hand-back gave its delivery back"
        );
        assert!(
            b.renew(Lease::new(&s, "g", "a", &both))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            b.renew(Lease::new(&s, "g", "b", &both)).await.unwrap(),
            vec![y]
        );
        let missing = c.key("missing");
        assert!(
            b.hand_back(Lease::new(&missing, "g", "a", &both))
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_are_fenced_and_atomic() {
    run("move", |c: Ctx| async move {
        let b = &c.backend;
        let (s, dlq) = (c.key("s"), c.key("dlq"));
        b.create_group(CreateGroup::new(&s, "g", StartAt::Beginning))
            .await
            .unwrap();
        let id = b.add(add(&s, &[("data", "{}")], vec![])).await.unwrap();
        read(b, "g", "a", &new(&s), None).await.unwrap();
        let mv = |source: &str, group: &str, consumer: Option<&str>| {
            let target = MoveTarget::Stream {
                key: dlq.clone(),
                fields: fields(&[("reason", "r"), ("bin", "\u{7f}")]),
                trim: vec![
                    Trim::MaxLen {
                        len: 10,
                        approx: true,
                    },
                    Trim::MaxAge {
                        age: Duration::from_secs(3600),
                        approx: true,
                    },
                ],
            };
            let mv = Move::new(source, group, id.clone(), target);
            match consumer {
                Some(c) => mv.fenced(c),
                None => mv,
            }
        };
        assert_eq!(
            b.move_entry(mv(&s, "g", Some("b"))).await.unwrap(),
            MoveOutcome::OwnedBy("a".into())
        );
        assert_eq!(
            b.len(&dlq).await.unwrap(),
            0,
            "a refused move writes nothing"
        );
        let MoveOutcome::Moved {
            new_id: Some(new_id),
        } = b.move_entry(mv(&s, "g", Some("a"))).await.unwrap()
        else {
            panic!("moved expected");
        };
        let copy = b.range(RangeQuery::new(&dlq, 10)).await.unwrap();
        assert_eq!(copy[0].id, new_id);
        assert_eq!(
            copy[0].fields,
            fields(&[("reason", "r"), ("bin", "\u{7f}")])
        );
        assert_eq!(
            b.move_entry(mv(&s, "g", Some("a"))).await.unwrap(),
            MoveOutcome::NotPending
        );
        assert_eq!(
            b.move_entry(mv(&s, "g", None)).await.unwrap(),
            MoveOutcome::NotPending
        );
        assert_eq!(
            b.len(&s).await.unwrap(),
            1,
            "the source stays without delete_source"
        );

        assert_eq!(
            b.move_entry(mv(&s, "nogroup", None)).await.unwrap(),
            MoveOutcome::NotPending
        );
        assert_eq!(
            b.move_entry(mv(&c.key("nokey"), "g", None)).await.unwrap(),
            MoveOutcome::NotPending
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_retries_promote_when_due() {
    run("schedule", |c: Ctx| async move {
        let b = &c.backend;
        let (s, sched, ready) = (
            c.key("s"),
            format!("{}:xnai:retry:{{s}}:schedule:g", c.ns),
            format!("{}:xnai:retry:{{s}}:ready:g", c.ns),
        );
        b.create_group(CreateGroup::new(&s, "g", StartAt::Beginning))
            .await
            .unwrap();
        b.create_group(CreateGroup::new(&ready, "g", StartAt::Beginning))
            .await
            .unwrap();
        // Equal fields from two entries must stay two retries.
        let id1 = b
            .add(add(&s, &[("data", "{\"same\":1}")], vec![]))
            .await
            .unwrap();
        let id2 = b
            .add(add(&s, &[("data", "{\"same\":1}")], vec![]))
            .await
            .unwrap();
        read(b, "g", "a", &new(&s), None).await.unwrap();
        for (id, delay) in [(&id1, 300), (&id2, 5000)] {
            let target = MoveTarget::Schedule {
                key: sched.clone(),
                fields: fields(&[("data", "{\"same\":1}"), ("retry_count", "1")]),
                delay: Duration::from_millis(delay),
            };
            let out = b
                .move_entry(Move::new(s.clone(), "g", id.clone(), target).fenced("a"))
                .await
                .unwrap();
            assert_eq!(out, MoveOutcome::Moved { new_id: None });
        }
        assert_eq!(b.schedule_len(&sched).await.unwrap(), 2);
        let pairs = vec![ScheduleKeys::new(sched.clone(), ready.clone())];
        let p = b.promote_due(&pairs, 100).await.unwrap();
        assert_eq!(p[0].promoted, 0);
        let next = p[0].next_due_in.unwrap();
        assert!(
            next > Duration::from_millis(100) && next <= Duration::from_millis(300),
            "{next:?}"
        );
        tokio::time::sleep(next + Duration::from_millis(20)).await;
        let p = b.promote_due(&pairs, 100).await.unwrap();
        assert_eq!(p[0].promoted, 1);
        assert!(p[0].next_due_in.unwrap() > Duration::from_secs(4));
        let got = read(b, "g", "a", &new(&ready), None).await.unwrap();
        assert_eq!(
            got[0].entries[0].entry.fields,
            fields(&[("data", "{\"same\":1}"), ("retry_count", "1")])
        );
        assert_eq!(b.schedule_len(&sched).await.unwrap(), 1);
        assert!(b.promote_due(&[], 10).await.unwrap().is_empty());
        let empty = vec![ScheduleKeys::new(c.key("none"), c.key("none:ready"))];
        assert_eq!(
            b.promote_due(&empty, 10).await.unwrap()[0].next_due_in,
            None
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_and_their_removal() {
    run("consumers", |c: Ctx| async move {
        let b = &c.backend;
        let s = c.key("s");
        b.create_group(CreateGroup::new(&s, "g", StartAt::Beginning))
            .await
            .unwrap();
        b.add(add(&s, &[("k", "v")], vec![])).await.unwrap();
        read(b, "g", "busy", &new(&s), None).await.unwrap();
        let done = b.add(add(&s, &[("k", "w")], vec![])).await.unwrap();
        read(b, "g", "idle", &new(&s), None).await.unwrap();
        b.ack(Ack::new(&s, "g", std::slice::from_ref(&done)))
            .await
            .unwrap();
        let mut cs = b.consumers(&s, "g").await.unwrap();
        cs.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(cs.len(), 2);
        assert_eq!((cs[0].name.as_str(), cs[0].pending), ("busy", 1));
        assert_eq!((cs[1].name.as_str(), cs[1].pending), ("idle", 0));
        let groups = b.groups(&s).await.unwrap();
        assert_eq!((groups[0].consumers, groups[0].pending), (2, 1));
        assert_eq!(groups[0].last_delivered.as_ref(), Some(&done));
        assert_eq!(
            b.delete_consumer(ConsumerRef::new(&s, "g", "busy"))
                .await
                .unwrap(),
            ConsumerRemoval::HasPending(1)
        );
        assert_eq!(
            b.delete_consumer(ConsumerRef::new(&s, "g", "idle"))
                .await
                .unwrap(),
            ConsumerRemoval::Deleted
        );
        assert_eq!(
            b.delete_consumer(ConsumerRef::new(&s, "g", "idle"))
                .await
                .unwrap(),
            ConsumerRemoval::Missing
        );
        assert_eq!(
            b.delete_consumer(ConsumerRef::new(&s, "nogroup", "x"))
                .await
                .unwrap(),
            ConsumerRemoval::Missing
        );
        assert_eq!(b.consumers(&s, "g").await.unwrap().len(), 1);
        assert!(matches!(
            b.consumers(&s, "nogroup").await,
            Err(StreamError::NoGroup { .. })
        ));
        assert!(matches!(
            b.consumers(&c.key("nokey"), "g").await,
            Err(StreamError::NoGroup { .. })
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_round_trips() {
    run("registry", |c: Ctx| async move {
        let b = &c.backend;
        let r = c.key("groups");
        assert_eq!(b.registry_get(&r, "g").await.unwrap(), None);
        assert!(b.registry_list(&r).await.unwrap().is_empty());
        b.registry_put(&r, "g", "{\"name\":\"g\"}").await.unwrap();
        b.registry_put(&r, "h", "{}").await.unwrap();
        assert_eq!(
            b.registry_get(&r, "g").await.unwrap().as_deref(),
            Some("{\"name\":\"g\"}")
        );
        let mut all = b.registry_list(&r).await.unwrap();
        all.sort();
        assert_eq!(
            all,
            vec![
                ("g".into(), "{\"name\":\"g\"}".into()),
                ("h".into(), "{}".into())
            ]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_keeps_shared_backend_usable() {
    run("close", |c: Ctx| async move {
        let shared = Arc::new(c.backend.clone());
        let other = Arc::clone(&shared);
        let s = c.key("s");
        shared
            .create_group(CreateGroup::new(&s, "g", StartAt::Beginning))
            .await
            .unwrap();
        read(
            &*shared,
            "g",
            "a",
            &new(&s),
            Some(Duration::from_millis(20)),
        )
        .await
        .unwrap();
        shared.close().await.unwrap();
        other.add(add(&s, &[("k", "v")], vec![])).await.unwrap();
        let got = read(
            &*other,
            "g",
            "a",
            &new(&s),
            Some(Duration::from_millis(500)),
        )
        .await
        .unwrap();
        assert_eq!(got[0].entries.len(), 1);
        let dbg = format!("{shared:?}");
        assert!(dbg.contains("RedisBackend"), "{dbg}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_connection_slices_blocking_reads() {
    run("shared", |c: Ctx| async move {
        let client = redis::Client::open(c.url.as_str()).unwrap();
        let conn = client.get_connection_manager().await.unwrap();
        let b = Arc::new(RedisBackend::from_connection_manager(conn));
        let s = c.key("s");
        b.create_group(CreateGroup::new(&s, "g", StartAt::End))
            .await
            .unwrap();
        // Longer than the connection's 500 ms default response timeout.
        let started = Instant::now();
        let got = read(&*b, "g", "a", &new(&s), Some(Duration::from_millis(1200)))
            .await
            .unwrap();
        assert!(got.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(1150));

        let reader = {
            let (b, s) = (Arc::clone(&b), s.clone());
            tokio::spawn(async move {
                read(&*b, "g", "a", &new(&s), Some(Duration::from_secs(3))).await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = Instant::now();
        b.add(add(&s, &[("k", "v")], vec![])).await.unwrap();
        let waited = sent.elapsed();
        assert!(
            waited < Duration::from_millis(150),
            "send waited {waited:?} behind a slice"
        );
        assert_eq!(reader.await.unwrap().unwrap()[0].entries.len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_and_unreachable_servers_are_clear_errors() {
    match RedisBackend::connect("not-a-url").await {
        Err(StreamError::Config { message }) => assert!(message.contains("redis"), "{message}"),
        other => panic!("{other:?}"),
    }
    let port = streams_redis::testing::free_port().unwrap();
    let config = RedisConfig::new(format!("redis://:pw@127.0.0.1:{port}"))
        .with_connect_timeout(Duration::from_millis(300))
        .with_reconnect_retries(0);
    let started = Instant::now();
    let err = RedisBackend::from_config(config).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        matches!(
            err,
            StreamError::Connection { .. } | StreamError::Timeout { .. }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("pw"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A plain connection for commands the backend does not send.
async fn raw(c: &Ctx) -> redis::aio::MultiplexedConnection {
    redis::Client::open(c.url.as_str())
        .expect("a valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_checks_every_group_before_delivering() {
    run("read-nogroup-late", |c: Ctx| async move {
        let b = &c.backend;
        let (s1, s2) = (c.key("s1"), c.key("s2"));
        for s in [&s1, &s2] {
            b.create_group(CreateGroup::new(s, "g", StartAt::Beginning))
                .await
                .unwrap();
        }
        for i in 0..3 {
            b.add(add(&s2, &[("n", &i.to_string())], vec![]))
                .await
                .unwrap();
        }
        let mut conn = raw(&c).await;
        let _: i64 = redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg(&s1)
            .arg("g")
            .query_async(&mut conn)
            .await
            .unwrap();
        // s2 is read first and has entries; s1 has lost its group.
        let keys = vec![s2.clone(), s1.clone()];
        let err = read(b, "g", "w", &keys, None).await.unwrap_err();
        assert!(matches!(err, StreamError::NoGroup { .. }), "{err}");
        let pending = b.pending(PendingQuery::new(&s2, "g", 10)).await.unwrap();
        assert!(
            pending.is_empty(),
            "nothing delivered unreturned: {pending:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_with_delete_take_many_ids() {
    run("ack-many", |c: Ctx| async move {
        let b = &c.backend;
        let s = c.key("ready");
        b.create_group(CreateGroup::new(&s, "g", StartAt::Beginning))
            .await
            .unwrap();
        let n = 9000;
        let adds = (0..n)
            .map(|i| add(&s, &[("n", &i.to_string())], vec![]))
            .collect();
        let ids = b.add_batch(adds).await.unwrap();
        let keys = new(&s);
        let got = b
            .read_group(ReadGroup::new("g", "w", &keys, n))
            .await
            .unwrap();
        assert_eq!(got[0].entries.len(), n);
        let acked = b.ack(Ack::new(&s, "g", &ids).deleting(true)).await.unwrap();
        assert_eq!(acked, n as u64);
        assert_eq!(b.len(&s).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_goes_past_members_it_cannot_unpack() {
    run("promote-bad-member", |c: Ctx| async move {
        let b = &c.backend;
        let (schedule, ready) = (c.key("schedule"), c.key("ready"));
        let mut conn = raw(&c).await;
        // A member whose fields hold a table, then a well-formed one.
        let _: () = redis::cmd("EVAL")
            .arg(
                "redis.call('ZADD', KEYS[1], 1, cmsgpack.pack({'a', 'b', 'k', {1}})) \
                 redis.call('ZADD', KEYS[1], 2, cmsgpack.pack({'a', 'b', 'k', 'v'}))",
            )
            .arg(1)
            .arg(&schedule)
            .query_async(&mut conn)
            .await
            .unwrap();
        let done = b
            .promote_due(&[ScheduleKeys::new(&schedule, &ready)], 10)
            .await
            .unwrap();
        assert_eq!(done[0].promoted, 2, "{done:?}");
        assert!(done[0].error.is_none(), "{done:?}");
        let entries = b.range(RangeQuery::new(&ready, 10)).await.unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].fields[0].0.as_ref(), b"schedule_member");
        assert_eq!(entries[1].fields, fields(&[("k", "v")]));
        assert_eq!(b.schedule_len(&schedule).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_after_an_id_compares_sequences_exactly() {
    run("create-after-big-seq", |c: Ctx| async move {
        let b = &c.backend;
        let s = c.key("s");
        let mut conn = raw(&c).await;
        // 2^53 and 2^53 + 1 are one double.
        let _: String = redis::cmd("XADD")
            .arg(&s)
            .arg("5-9007199254740992")
            .arg("n")
            .arg("1")
            .query_async(&mut conn)
            .await
            .unwrap();
        let beyond = EntryId::from("5-9007199254740993");
        assert!(
            b.create_group(CreateGroup::new(&s, "g", StartAt::After(beyond)))
                .await
                .unwrap()
        );
        // The stream never gave out 5-9007199254740993: the group starts at
        // the beginning and skips nothing.
        let got = read(b, "g", "w", &new(&s), None).await.unwrap();
        assert_eq!(got[0].entries[0].entry.id.as_str(), "5-9007199254740992");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_back_refuses_bad_ids_before_changing_anything() {
    run("hand-back-bad-id", |c: Ctx| async move {
        let b = &c.backend;
        let s = c.key("s");
        b.create_group(CreateGroup::new(&s, "g", StartAt::Beginning))
            .await
            .unwrap();
        let id = b.add(add(&s, &[("n", "1")], vec![])).await.unwrap();
        read(b, "g", "w", &new(&s), None).await.unwrap();
        let ids = [id, EntryId::from("not-an-id")];
        assert!(b.hand_back(Lease::new(&s, "g", "w", &ids)).await.is_err());
        let pending = b.pending(PendingQuery::new(&s, "g", 10)).await.unwrap();
        assert_eq!(pending[0].deliveries, 1, "nothing was given back");
        assert!(pending[0].idle < Duration::from_secs(60));
    })
    .await;
}

/// Concurrent single commands share round trips, and each caller still gets
/// its own reply: adds to a key of another type fail alone, among adds and
/// moves that succeed, and every successful add's id is that of its own
/// entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_each_get_their_own_reply() {
    run("coalesce", |c: Ctx| async move {
        let b = Arc::new(c.backend.clone());
        let s = c.key("s");
        let wrong = c.key("wrong");
        let mut conn = raw(&c).await;
        redis::cmd("SET")
            .arg(&wrong)
            .arg("not a stream")
            .exec_async(&mut conn)
            .await
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..300usize {
            let (b, s, wrong) = (Arc::clone(&b), s.clone(), wrong.clone());
            tasks.spawn(async move {
                let key = if i % 7 == 3 { &wrong } else { &s };
                let n = i.to_string();
                let got = b.add(add(key, &[("n", &n)], Vec::new())).await;
                (i, got)
            });
        }
        let mut ids = std::collections::HashMap::new();
        while let Some(done) = tasks.join_next().await {
            let (i, got) = done.unwrap();
            if i % 7 == 3 {
                let e = got.unwrap_err();
                assert!(e.to_string().contains("WRONGTYPE"), "{i}: {e}");
            } else {
                ids.insert(got.unwrap(), i.to_string());
            }
        }
        let stored = b.range(RangeQuery::new(&s, 1000)).await.unwrap();
        assert_eq!(stored.len(), ids.len());
        for entry in stored {
            assert_eq!(
                Some(ids[&entry.id].as_bytes()),
                entry.fields.first().map(|(_, v)| v.as_ref()),
                "the id returned for an add is its own entry's"
            );
        }
    })
    .await;
}

/// Moves in bulk are made each on its own: one whose target holds another
/// type fails alone, writes nothing and leaves its entry pending; the
/// others move, in one round trip of several script calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_in_bulk_fail_one_by_one() {
    run("move-many", |c: Ctx| async move {
        let b = &c.backend;
        let s = c.key("s");
        let dead = c.key("dead");
        let wrong = c.key("wrong");
        b.create_group(CreateGroup::new(&s, "g", StartAt::Beginning))
            .await
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..250 {
            ids.push(
                b.add(add(&s, &[("i", &i.to_string())], Vec::new()))
                    .await
                    .unwrap(),
            );
        }
        read(b, "g", "a", &new(&s), None).await.unwrap();
        let keys = new(&s);
        while !read(b, "g", "a", &keys, None).await.unwrap().is_empty() {}
        let mut conn = raw(&c).await;
        redis::cmd("SET")
            .arg(&wrong)
            .arg("not a stream")
            .exec_async(&mut conn)
            .await
            .unwrap();
        let moves: Vec<Move> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let target = MoveTarget::Stream {
                    key: if i == 120 {
                        wrong.clone()
                    } else {
                        dead.clone()
                    },
                    fields: fields(&[("i", &i.to_string())]),
                    trim: vec![Trim::MaxLen {
                        len: 1000,
                        approx: true,
                    }],
                };
                Move::new(s.clone(), "g", id.clone(), target).fenced("a")
            })
            .collect();
        let outcomes = b.move_entries(moves).await.unwrap();
        assert_eq!(outcomes.len(), 250);
        for (i, outcome) in outcomes.iter().enumerate() {
            if i == 120 {
                let e = outcome.as_ref().unwrap_err();
                assert!(e.to_string().contains("WRONGTYPE"), "{e}");
            } else {
                assert!(
                    matches!(outcome, Ok(MoveOutcome::Moved { new_id: Some(_) })),
                    "{i}: {outcome:?}"
                );
            }
        }
        assert_eq!(b.len(&dead).await.unwrap(), 249);
        let pending = b.pending(PendingQuery::new(&s, "g", 1000)).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, ids[120]);
    })
    .await;
}
