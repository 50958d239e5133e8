//! Entries trimmed from the stream while pending: the runner that claims
//! the dead holders' work finds them gone, acknowledges them, counts them
//! (`Stats::pending_deleted`, its summary's `trimmed`) and logs them. They
//! leave the books reported, never silently.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{GROUP, STREAM, Scenario, runner_options, until};
use serde_json::json;
use streams_conformance::checker::Event;
use streams_core::Manager;
use streams_core::runner::Settled;
use streams_redis::{RedisBackend, RedisConfig};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Keeps the text of every warning logged in this process.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut text = Text(String::new());
            event.record(&mut text);
            self.0.lock().unwrap().push(text.0);
        }
    }
}

/// Sends `count` messages keyed `<prefix>-<n>`; returns the keys.
async fn send(s: &Scenario, m: &Manager<RedisBackend>, prefix: &str, count: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for n in 0..count {
        let key = format!("{prefix}-{n}");
        let id = m
            .send_message(STREAM, json!({"key": key}), None)
            .await
            .unwrap();
        s.recorder.sent(&key, STREAM, &id);
        keys.push(key);
    }
    keys
}

/// Reads `count` messages as `holder`, recording each start; returns
/// them in the stream's order.
async fn hold(
    s: &Scenario,
    m: &Manager<RedisBackend>,
    holder: &str,
    count: usize,
) -> Vec<streams_core::StreamMessage> {
    let mut held = Vec::new();
    while held.len() < count {
        let read = m
            .read_messages(GROUP, Some(count - held.len()), Some(Duration::ZERO))
            .await
            .unwrap();
        assert!(!read.is_empty(), "{holder} read {} of {count}", held.len());
        held.extend(read);
    }
    for msg in &held {
        let key = msg.data["key"].as_str().unwrap();
        s.recorder.started(key, STREAM, &msg.id, holder, 1);
    }
    held
}

fn key_of(msg: &streams_core::StreamMessage) -> String {
    msg.data["key"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_trimmed_while_pending_are_counted_and_reported() {
    let warnings = Warnings::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(warnings.clone()))
        .unwrap();
    let _serial = common::SERIAL.lock().await;
    let s = Scenario::new("trimmed-while-pending", &[]);
    let claim_idle = Duration::from_millis(500);
    let config = RedisConfig::new(s.server.url())
        .with_response_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(2));
    let producer = s.manager_on(config.clone(), "producer").await;
    s.create_group(&producer, claim_idle).await;
    let key = format!("{}:{{{STREAM}}}", s.namespace);
    let mut conn = s.redis().await;

    // 1. h1 reads 60 and acknowledges 20; the stream is cut to nothing
    // with a plain XTRIM while 40 are pending.
    send(&s, &producer, "a", 60).await;
    let h1 = s.manager_on(config.clone(), "h1").await;
    let held = hold(&s, &h1, "h1", 60).await;
    for msg in &held[..20] {
        assert!(h1.acknowledge(msg, GROUP).await.unwrap());
        s.recorder
            .settled(&key_of(msg), STREAM, &msg.id, "h1", Settled::Acked);
    }
    let mut trimmed: BTreeSet<String> = held[20..].iter().map(key_of).collect();
    s.recorder.fault("XTRIM MAXLEN 0 while h1 holds 40");
    let removed: u64 = redis::cmd("XTRIM")
        .arg(&key)
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(removed, 60);

    // 2. h2 reads 30; the library's own trim keeps the newest 10.
    send(&s, &producer, "b", 30).await;
    let h2 = s.manager_on(config.clone(), "h2").await;
    let held = hold(&s, &h2, "h2", 30).await;
    s.recorder.fault("trim_stream(10) while h2 holds 30");
    assert_eq!(producer.trim_stream(STREAM, 10).await.unwrap(), 20);
    trimmed.extend(held[..20].iter().map(key_of));
    // The holders die with their work.
    drop((h1, h2));

    // 3. New work, and a runner that claims the dead holders' entries.
    send(&s, &producer, "c", 20).await;
    let r1 = s.manager_on(config.clone(), "r1").await;
    let runner = s.runner("r1", r1.clone(), runner_options(claim_idle));
    let handled = 20 + 10 + 20;
    let m = s.manager("checker").await;
    let settled_keys = || {
        s.checker()
            .events()
            .iter()
            .filter_map(|e| match e {
                Event::Settled { key, how, .. } if how == "acked" => Some(key.clone()),
                _ => None,
            })
            .collect::<BTreeSet<String>>()
    };
    until(
        "the runner to handle what was not trimmed",
        Duration::from_secs(30),
        || settled_keys().len() == handled,
    )
    .await;
    let mut end = None;
    for _ in 0..100 {
        end = s.final_state(&m).await.filter(|e| e.pending == 0);
        if end.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = end.expect("the trimmed entries left the pending list");
    let summary = runner.stop().await;
    eprintln!("trimmed-while-pending: runner: {summary}");

    // Counted: by the runner's summary and the manager's statistics.
    assert_eq!(summary.trimmed, trimmed.len() as u64, "{summary}");
    assert_eq!(r1.counters().pending_deleted, trimmed.len() as u64);
    assert_eq!(r1.get_stats().await.unwrap().pending_deleted, 60);
    assert_eq!(summary.claimed, 10, "{summary}");
    assert_eq!(summary.acked, 30, "{summary}");
    // Logged, with the stream and how many.
    let logged: u64 = warnings
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.contains("trimmed or deleted"))
        .map(|w| {
            assert!(w.contains(&format!("stream={STREAM}")), "{w}");
            let n = w.split("entries=").nth(1).unwrap();
            n.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(logged, 60, "{:?}", warnings.0.lock().unwrap());

    // The books: without the trimmed keys excused, exactly they are lost;
    // with them excused, nothing is.
    let unexcused = s.checker().check(&end);
    let lost: BTreeSet<String> = unexcused.lost_keys.iter().cloned().collect();
    assert_eq!(unexcused.lost, 60, "{unexcused}");
    assert!(lost.is_subset(&trimmed), "{lost:?}");
    let report = s.report(&end.excused(trimmed));
    report.assert_ok("trimmed-while-pending");
    assert_eq!(report.messages, 110);
}
