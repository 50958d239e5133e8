//! Interoperability with other Redis clients, using `redis-cli` as the
//! foreign client, and the connection model as a user of the manager sees it.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use common::{Ctx, redis_cli, run};
use serde_json::{Value, json};
use streams_core::backend::{RangeQuery, StreamBackend};
use streams_core::{ConsumerGroupConfig, Manager, ManagerConfig, MessageStatus};
use streams_redis::RedisBackend;

fn manager(c: &Ctx, consumer: &str) -> Manager<RedisBackend> {
    let config = ManagerConfig::default()
        .with_namespace(c.ns.clone())
        .with_consumer_id(consumer);
    Manager::new(c.backend.clone(), config).expect("valid test configuration")
}

fn group(name: &str, stream: &str) -> ConsumerGroupConfig {
    ConsumerGroupConfig::new(name, [stream]).with_block(Duration::from_millis(200))
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `redis-cli` output in its raw (non-tty) form: one element per line.
fn lines(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_from_redis_cli_is_read_as_string_fields() {
    run("foreign", |c: Ctx| async move {
        let m = manager(&c, "rust-1");
        m.create_consumer_group(&group("g", "agents"))
            .await
            .unwrap();
        let key = m.keys().stream("agents");
        redis_cli(
            &c.url,
            &[
                os("XADD"),
                os(&key),
                os("*"),
                os("agent"),
                os("py"),
                os("n"),
                os("3"),
            ],
        );
        let got = m
            .read_messages("g", None, Some(Duration::from_secs(1)))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        let msg = &got[0];
        assert_eq!(
            Value::Object(msg.data.clone()),
            json!({"agent": "py", "n": "3"})
        );
        assert_eq!(msg.status, MessageStatus::Pending);
        assert_eq!(msg.stream, "agents");
        assert!(msg.mid.is_none());
        assert!(
            !msg.timestamp.is_empty(),
            "the id's time stands in for `ts`"
        );
        assert!(m.acknowledge(msg, "g").await.unwrap());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_sent_by_manager_is_plain_json_in_redis_cli() {
    run("xrange", |c: Ctx| async move {
        let m = manager(&c, "rust-1");
        let payload =
            json!({"task_id": "R003-1", "nested": {"list": [1, 2.5, null, true], "s": "é"}});
        let id = m
            .send_message("tasks", payload.clone(), None)
            .await
            .unwrap();
        let key = m.keys().stream("tasks");
        let out = lines(&redis_cli(
            &c.url,
            &[os("XRANGE"), os(&key), os("-"), os("+")],
        ));
        assert_eq!(out[0], id);
        let field = |name: &str| {
            let at = out
                .iter()
                .position(|l| l == name)
                .unwrap_or_else(|| panic!("no `{name}` in {out:?}"));
            out[at + 1].clone()
        };
        let data: Value = serde_json::from_str(&field("data")).unwrap();
        assert_eq!(data, payload);
        assert!(field("ts").ends_with('Z'), "RFC 3339 UTC: {out:?}");
        assert!(!field("mid").is_empty());
        assert!(!out.iter().any(|l| l == "retry_count"), "absent means 0");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entries_fail_and_dead_letter_with_raw_fields() {
    run("malformed", |c: Ctx| async move {
        let m = manager(&c, "rust-1");
        m.create_consumer_group(&group("g", "inbox")).await.unwrap();
        let key = m.keys().stream("inbox");
        redis_cli(
            &c.url,
            &[os("XADD"), os(&key), os("*"), os("data"), os("not json")],
        );
        let binary = OsStr::from_bytes(b"\xff\xfe");
        redis_cli(
            &c.url,
            &[os("XADD"), os(&key), os("*"), os("agent"), binary],
        );

        let got = m
            .read_messages("g", None, Some(Duration::from_secs(1)))
            .await
            .unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        for msg in &got {
            assert_eq!(msg.status, MessageStatus::Failed, "{msg:?}");
            assert!(
                msg.error
                    .as_deref()
                    .unwrap_or_default()
                    .contains("malformed"),
                "{msg:?}"
            );
            assert!(msg.is_malformed());
            m.send_to_dlq(msg, "undecodable", Some("g")).await.unwrap();
        }
        assert!(
            m.read_messages("g", None, Some(Duration::from_millis(100)))
                .await
                .unwrap()
                .is_empty()
        );

        let dlq = c
            .backend
            .range(RangeQuery::new(&m.keys().dlq("inbox"), 10))
            .await
            .unwrap();
        assert_eq!(dlq.len(), 2);
        let field = |i: usize, name: &str| {
            dlq[i]
                .fields
                .iter()
                .find(|(k, _)| k.as_ref() == name.as_bytes())
                .map(|(_, v)| v.to_vec())
                .unwrap_or_else(|| panic!("no `{name}` in {:?}", dlq[i].fields))
        };
        assert_eq!(field(0, "raw:data"), b"not json");
        assert_eq!(field(1, "raw:agent"), b"\xff\xfe");
        for (i, msg) in got.iter().enumerate() {
            assert_eq!(field(i, "origin_stream"), b"inbox");
            assert_eq!(field(i, "origin_id"), msg.id.as_bytes());
            assert_eq!(field(i, "group"), b"g");
            assert_eq!(field(i, "consumer"), b"rust-1");
            assert_eq!(field(i, "reason"), b"undecodable");
        }
        // Acknowledged in the group by the move.
        let groups = c.backend.groups(&key).await.unwrap();
        assert_eq!(groups[0].pending, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_read_does_not_delay_acks_or_sends() {
    run("noqueue", |c: Ctx| async move {
        let m = manager(&c, "rust-1");
        m.create_consumer_group(&group("g", "work")).await.unwrap();
        m.send_message("work", json!({"n": 1}), None).await.unwrap();
        let msg = m.read_messages("g", None, None).await.unwrap().remove(0);

        let reader = {
            let m = m.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let got = m
                    .read_messages("g", None, Some(Duration::from_secs(2)))
                    .await;
                (got, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;

        let started = Instant::now();
        assert!(m.acknowledge(&msg, "g").await.unwrap());
        let ack = started.elapsed();
        let started = Instant::now();
        m.send_message("elsewhere", json!({"n": 2}), None)
            .await
            .unwrap();
        let send = started.elapsed();
        assert!(
            ack < Duration::from_millis(100),
            "ack waited {ack:?} behind a BLOCK"
        );
        assert!(
            send < Duration::from_millis(100),
            "send waited {send:?} behind a BLOCK"
        );

        // A 2 s BLOCK runs its course (the redis crate's default 500 ms
        // response timeout would have failed it).
        let (got, waited) = reader.await.unwrap();
        assert!(got.unwrap().is_empty());
        assert!(
            waited >= Duration::from_millis(1900),
            "returned after {waited:?}"
        );
        assert!(waited < Duration::from_secs(4), "returned after {waited:?}");
    })
    .await;
}
