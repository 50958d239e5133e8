//! Out of memory: a server over `maxmemory` under `noeviction` refuses
//! sends with a typed error that says so, is not ready and is unhealthy,
//! and loses nothing it accepted: consumers drain it while it is full.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{STREAM, Scenario, runner_options, until};
use serde_json::json;
use streams_conformance::checker::Event;
use streams_core::runner::Settled;
use streams_core::{HealthStatus, Refusal, StreamError};
use streams_redis::RedisConfig;

/// Messages whose handler asks for a retry (a move).
const RETRIED: u64 = 10;

/// Keys acknowledged so far, by the history.
fn acked_keys(s: &Scenario) -> u64 {
    let keys: HashSet<String> = s
        .checker()
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Settled { key, how, .. } if how == "acked" => Some(key.clone()),
            _ => None,
        })
        .collect();
    keys.len() as u64
}

/// Whether `e` is the refusal of a server out of memory.
fn is_oom(e: &StreamError) -> bool {
    matches!(
        e,
        StreamError::WriteRefused {
            reason: Refusal::OutOfMemory,
            ..
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_refuses_sends_clearly_and_loses_nothing() {
    let _serial = common::SERIAL.lock().await;
    let s = Scenario::new(
        "out-of-memory",
        &["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"],
    );
    let claim_idle = Duration::from_secs(1);
    let config = RedisConfig::new(s.server.url())
        .with_response_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(2));
    let producer = s.manager_on(config.clone(), "producer").await;
    s.create_group(&producer, claim_idle).await;

    // Fill the server with sends until one is refused.
    let pad = "x".repeat(1000);
    let mut sent = 0u64;
    let refusal = loop {
        assert!(sent < 10_000, "2 MB of maxmemory never filled up");
        let key = format!("p-{sent}");
        // A few ask for a retry: moves, which a full server refuses.
        let fail_first = (1..=RETRIED).contains(&sent);
        match producer
            .send_message(
                STREAM,
                json!({"key": key, "pad": pad, "fail_first": fail_first}),
                None,
            )
            .await
        {
            Ok(id) => {
                s.recorder.sent(&key, STREAM, &id);
                sent += 1;
            }
            Err(e) => break e,
        }
    };
    s.recorder.fault("out of memory: sends refused");
    eprintln!("out-of-memory: {sent} sends accepted, then: {refusal}");
    assert!(is_oom(&refusal), "{refusal:?}");
    assert!(!refusal.is_retryable(), "{refusal:?}");
    let text = refusal.to_string();
    assert!(
        text.contains("refused XADD") && text.contains("out of memory") && text.contains("OOM"),
        "{text}"
    );
    // Right at the limit, memory moves a little (buffers freed, a key
    // expired) and a small write can slip in; the rest of the scenario is
    // about a server well past it, so the limit goes down to half.
    let mut admin = s.redis().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1mb")
        .query_async(&mut admin)
        .await
        .unwrap();
    // Not an accident at the edge of the limit: the next sends fail alike.
    for n in 0..3 {
        let e = producer
            .send_message(STREAM, json!({"key": format!("refused-{n}")}), None)
            .await
            .unwrap_err();
        assert!(is_oom(&e), "{e:?}");
    }
    let batch = producer
        .send_batch(
            STREAM,
            vec![json!({"key": "b-1"}), json!({"key": "b-2"})],
            None,
        )
        .await
        .unwrap_err();
    assert!(is_oom(&batch), "a batch too: {batch:?}");

    // Probes see it: not ready, unhealthy, and why.
    let ready = producer.readiness().await.unwrap();
    assert!(
        !ready.ready && ready.reachable && !ready.accepts_writes,
        "{ready:?}"
    );
    assert!(
        ready
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("out of memory")),
        "{ready:?}"
    );
    let health = producer.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Unhealthy, "{health:#?}");
    assert!(!health.healthy && !health.accepts_writes);
    assert!(
        health.problems.iter().any(|p| p.contains("out of memory")),
        "{health:#?}"
    );

    // Reads and acks are not refused (Redis refuses only commands that may
    // grow memory, such as XADD, XGROUP CREATE, ZADD and SET); moves are,
    // with the same error, and leave the message pending.
    let c0 = s.manager_on(config.clone(), "c0").await;
    let read = c0
        .read_messages(common::GROUP, Some(1), Some(Duration::ZERO))
        .await
        .unwrap();
    let [first] = read.as_slice() else {
        panic!("one message read: {read:?}")
    };
    let first_key = first.data.get("key").and_then(|k| k.as_str()).unwrap();
    s.recorder.started(first_key, STREAM, &first.id, "c0", 1);
    let retry = c0.retry_message(first).await.unwrap_err();
    assert!(is_oom(&retry), "a retry move: {retry:?}");
    let dead = c0
        .send_to_dlq(first, "no reason", Some(common::GROUP))
        .await
        .unwrap_err();
    assert!(is_oom(&dead), "a dead-letter move: {dead:?}");
    assert!(c0.acknowledge(first, common::GROUP).await.unwrap());
    s.recorder
        .settled(first_key, STREAM, &first.id, "c0", Settled::Acked);

    // A runner drains the full server, but for the messages whose handler
    // asks for a retry: those stay pending until memory is freed.
    let c1 = s.manager_on(config.clone(), "c1").await;
    let runner = s.runner("c1", c1.clone(), runner_options(claim_idle));
    until(
        "every other accepted send to be acknowledged while out of memory",
        Duration::from_secs(30),
        || acked_keys(&s) == sent - RETRIED,
    )
    .await;
    let refused_moves = s
        .checker()
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Settled { how, .. } if how == "failed"))
        .count();
    assert!(
        refused_moves >= RETRIED as usize,
        "each retry was refused: {refused_moves}"
    );
    // Claims work too: once idle, the runner claims them and tries again.
    until(
        "the refused messages to be claimed while out of memory",
        Duration::from_secs(10),
        || {
            let checker = s.checker();
            (1..=RETRIED).all(|n| {
                let key = format!("p-{n}");
                checker
                    .events()
                    .iter()
                    .filter(|e| matches!(e, Event::Started { key: k, .. } if *k == key))
                    .count()
                    >= 2
            })
        },
    )
    .await;
    let still_full = producer
        .send_message(STREAM, json!({"key": "still-full"}), None)
        .await
        .unwrap_err();
    assert!(
        is_oom(&still_full),
        "acknowledging frees no stream memory: {still_full:?}"
    );
    assert!(!producer.readiness().await.unwrap().ready);

    // Memory raised: the same managers go on.
    let mut conn = s.redis().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    s.recorder.healed("maxmemory lifted");
    assert!(producer.readiness().await.unwrap().ready);
    for n in 0..20 {
        let key = format!("after-{n}");
        let id = producer
            .send_message(STREAM, json!({"key": key}), None)
            .await
            .unwrap();
        s.recorder.sent(&key, STREAM, &id);
    }
    let end = s.drain(0, Duration::from_secs(30)).await;
    let summary = runner.stop().await;
    eprintln!("out-of-memory: runner: {summary}");
    assert_eq!(summary.acked, sent - 1 + 20, "{summary}");
    assert_eq!(summary.retried, RETRIED, "{summary}");
    let health = producer.health().await.unwrap();
    assert!(health.healthy, "{health:#?}");
    let report = s.report(&end);
    report.assert_ok("out-of-memory");
    assert_eq!(report.messages, sent + 20);
}
