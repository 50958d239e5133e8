//! The metrics a manager emits, as a Prometheus exporter renders them, on
//! both backends. This binary installs the process-wide recorder, so it is
//! a test file of its own: no other test sees the recorder.
//!
//! Each backend works on streams and groups named after it (`memory-jobs`,
//! `redis-jobs`), so the two run side by side and each finds its own series.

#![allow(clippy::unwrap_used, reason = "the scenario helper is test code too")]

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use streams_redis::testing;
use xnai_streams::backend::Add;
use xnai_streams::runner::{CancellationToken, ConsumeOptions, Job};
use xnai_streams::{
    ConsumerGroupConfig, Manager, ManagerConfig, MemoryBackend, RedisBackend, RetryPolicy,
    StreamBackend, StreamManagerExt, observe,
};

const LIMIT: Duration = Duration::from_secs(30);

/// Every label a series may have (`quantile` is the exporter's, for
/// histograms).
const LABELS: [&str; 5] = ["stream", "group", "consumer", "outcome", "quantile"];

/// The recorder of this process, installed once.
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("no other recorder is installed in this test binary")
    })
}

/// A counter, its labels, and the value it should have.
type Expected<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// One sample of the text exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text exposition format (the subset the exporter
/// writes: `name{k="v",...} value` lines and `#` comments).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let value: f64 = value.parse().expect("a number");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("closing brace");
                let labels = rest
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").expect("k=\"v\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// The value of the series `name` whose labels are exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|(n, l, _)| n == name && *l == wanted)
        .map(|(_, _, v)| *v)
}

/// Sends, reads, acknowledges, retries, dead-letters, hands back, claims,
/// reads a malformed entry and recovers a lost group, as consumers `a` and
/// `b` of group `<tag>-workers` on stream `<tag>-jobs`, and records the
/// group's gauges and a handler's histograms as a runner would; then checks
/// that every counter moved by exactly that much and every gauge shows the
/// group's state, with their labels.
async fn exercise(backend: Arc<dyn StreamBackend>, config: ManagerConfig, tag: &str) {
    let handle = prometheus();
    let stream = format!("{tag}-jobs");
    let group = format!("{tag}-workers");
    let a = Manager::new(Arc::clone(&backend), config.clone().with_consumer_id("a")).unwrap();
    let b = Manager::new(Arc::clone(&backend), config.with_consumer_id("b")).unwrap();
    a.create_consumer_group(
        &ConsumerGroupConfig::new(group.clone(), [stream.clone()])
            .with_claim_idle(Duration::from_millis(50))
            .with_block(Duration::from_millis(50)),
    )
    .await
    .unwrap();

    let batch = (0..4).map(|n| json!({ "n": n })).collect();
    a.send_batch(&stream, batch, None).await.unwrap();
    a.send_message(&stream, json!({"n": 4}), None)
        .await
        .unwrap();
    let got = a.read_messages(&group, Some(5), None).await.unwrap();
    assert_eq!(got.len(), 5);
    assert!(a.acknowledge(&got[0], &group).await.unwrap());
    assert!(a.retry_message(&got[1]).await.unwrap());
    a.send_to_dlq(&got[2], "unusable", Some(&group))
        .await
        .unwrap();
    assert_eq!(a.release(&got[3..4]).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The handed-back message and the one left idle.
    let claimed = b
        .claim_pending_messages(&group, Some(Duration::from_millis(50)))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);

    let key = a.keys().stream(&stream);
    let bad = vec![(Bytes::from_static(b"data"), Bytes::from_static(b"not json"))];
    backend.add(Add::new(key.clone(), bad)).await.unwrap();
    let malformed = a.read_messages(&group, None, None).await.unwrap();
    assert_eq!(malformed.len(), 1);
    assert!(malformed[0].is_malformed());

    // The server loses the group; the next read recreates it.
    assert!(backend.destroy_group(&key, &group).await.unwrap());
    a.send_message(&stream, json!({"n": 5}), None)
        .await
        .unwrap();
    assert_eq!(a.read_messages(&group, None, None).await.unwrap().len(), 1);

    // What a runner records: gauges on a ticker, histograms per message.
    observe::record_group_gauges(&a, &group).await.unwrap();
    observe::record_handler(&stream, &group, "a", "ack", Duration::from_millis(30));
    observe::record_end_to_end(&malformed[0], &group, "a");

    let samples = parse(&handle.render());
    let s = stream.as_str();
    let g = group.as_str();
    let of = |consumer| [("stream", s), ("group", g), ("consumer", consumer)];
    let expected: [Expected<'_>; 10] = [
        ("xnai_streams_messages_sent_total", vec![("stream", s)], 6.0),
        ("xnai_streams_messages_read_total", of("a").to_vec(), 7.0),
        ("xnai_streams_messages_read_total", of("b").to_vec(), 2.0),
        ("xnai_streams_messages_acked_total", of("a").to_vec(), 1.0),
        ("xnai_streams_messages_retried_total", of("a").to_vec(), 1.0),
        (
            "xnai_streams_messages_dead_lettered_total",
            of("a").to_vec(),
            1.0,
        ),
        (
            "xnai_streams_messages_handed_back_total",
            of("a").to_vec(),
            1.0,
        ),
        ("xnai_streams_messages_claimed_total", of("b").to_vec(), 2.0),
        (
            "xnai_streams_malformed_messages_total",
            vec![("stream", s), ("group", g)],
            1.0,
        ),
        (
            "xnai_streams_groups_recreated_total",
            vec![("group", g)],
            1.0,
        ),
    ];
    for (name, labels, want) in expected {
        assert_eq!(
            value(&samples, name, &labels),
            Some(want),
            "{name} {labels:?} in\n{}",
            handle.render()
        );
    }
    let per_stream = [("stream", s), ("group", g)];
    // Left pending: the message read after the group came back (the lost
    // group took the others' pending entries with it).
    assert_eq!(
        value(&samples, "xnai_streams_group_pending", &per_stream),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "xnai_streams_scheduled_retries", &per_stream),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "xnai_streams_group_claimable", &per_stream),
        Some(0.0)
    );
    let oldest = value(&samples, "xnai_streams_oldest_pending_seconds", &per_stream).unwrap();
    assert!((0.0..30.0).contains(&oldest), "{oldest}");
    // Redis 7.0 may not know the lag of a group created at an entry id.
    let lag = value(&samples, "xnai_streams_group_lag", &per_stream);
    if tag == "memory" {
        assert_eq!(lag, Some(0.0));
    } else {
        assert!(matches!(lag, None | Some(0.0)), "{lag:?}");
    }
    assert_eq!(value(&samples, "xnai_streams_dlq_length", &[]), Some(1.0));
    let handled = [
        ("stream", s),
        ("group", g),
        ("consumer", "a"),
        ("outcome", "ack"),
    ];
    assert_eq!(
        value(
            &samples,
            "xnai_streams_handler_duration_seconds_count",
            &handled
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "xnai_streams_handler_duration_seconds_sum",
            &handled
        ),
        Some(0.03)
    );
    assert_eq!(
        value(&samples, "xnai_streams_end_to_end_seconds_count", &of("a")),
        Some(1.0)
    );

    // The manager's own statistics agree.
    let stats = a.get_stats().await.unwrap();
    assert_eq!(stats.messages_read, 7);
    assert_eq!(stats.messages_failed, 2);
    // No series is labelled with a message id.
    for (name, labels, _) in samples.iter().filter(|(n, _, _)| n.starts_with("xnai_")) {
        assert!(
            labels.keys().all(|k| LABELS.contains(&k.as_str())),
            "{name} {labels:?}"
        );
    }
}

/// A consume runner over `<tag>-runner-jobs`: two messages acked, one that
/// fails once and is then acked. The runner records the handler and
/// end-to-end histograms and refreshes the group's gauges on its ticker.
async fn exercise_runner(backend: Arc<dyn StreamBackend>, config: ManagerConfig, tag: &str) {
    let handle = prometheus();
    let stream = format!("{tag}-runner-jobs");
    let group = format!("{tag}-runner-workers");
    let m = Manager::new(backend, config.with_consumer_id("r")).unwrap();
    m.create_consumer_group(
        &ConsumerGroupConfig::new(group.clone(), [stream.clone()]).with_retry(RetryPolicy::new(
            3,
            Duration::from_millis(10),
            Duration::from_millis(10),
        )),
    )
    .await
    .unwrap();
    for n in 0..3 {
        m.send_message(&stream, json!({ "n": n }), None)
            .await
            .unwrap();
    }
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let summary = m
        .consume(&group, {
            let (acked, stop) = (Arc::clone(&acked), stop.clone());
            move |job: Job<serde_json::Value>| {
                let (acked, stop) = (Arc::clone(&acked), stop.clone());
                async move {
                    if job.data["n"] == 2 && job.retry_count() == 0 {
                        return Err("not yet");
                    }
                    if acked.fetch_add(1, Ordering::SeqCst) + 1 == 3 {
                        stop.cancel();
                    }
                    Ok(())
                }
            }
        })
        .options(
            ConsumeOptions::default()
                .poll(Duration::from_millis(50))
                .promote_interval(Duration::from_millis(20))
                .gauge_interval(Duration::from_millis(20)),
        )
        .shutdown_on(stop)
        .await
        .unwrap();
    assert_eq!((summary.acked, summary.retried), (3, 1), "{summary}");
    let samples = parse(&handle.render());
    let (s, g) = (stream.as_str(), group.as_str());
    let handled = |outcome| {
        let labels = [
            ("stream", s),
            ("group", g),
            ("consumer", "r"),
            ("outcome", outcome),
        ];
        value(
            &samples,
            "xnai_streams_handler_duration_seconds_count",
            &labels,
        )
    };
    assert_eq!(handled("ack"), Some(3.0), "{}", handle.render());
    assert_eq!(handled("failed"), Some(1.0));
    let of = [("stream", s), ("group", g), ("consumer", "r")];
    assert_eq!(
        value(&samples, "xnai_streams_end_to_end_seconds_count", &of),
        Some(3.0)
    );
    assert_eq!(
        value(&samples, "xnai_streams_messages_acked_total", &of),
        Some(3.0)
    );
    assert!(
        value(
            &samples,
            "xnai_streams_group_pending",
            &[("stream", s), ("group", g)]
        )
        .is_some(),
        "the runner refreshed the group's gauges"
    );
}

async fn within_limit(name: &str, f: impl Future<Output = ()>) {
    match tokio::time::timeout(LIMIT, AssertUnwindSafe(f).catch_unwind()).await {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{name} hung"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_counters_reach_prometheus() {
    let backend: Arc<dyn StreamBackend> = Arc::new(MemoryBackend::new());
    within_limit(
        "memory",
        exercise(Arc::clone(&backend), ManagerConfig::default(), "memory"),
    )
    .await;
    within_limit(
        "memory runner",
        exercise_runner(backend, ManagerConfig::default(), "memory"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_counters_reach_prometheus() {
    let url = testing::redis_url();
    let namespace = format!("xt-{}-metrics", std::process::id());
    let backend: Arc<dyn StreamBackend> = Arc::new(RedisBackend::connect(&url).await.unwrap());
    let config = ManagerConfig::default().with_namespace(namespace.clone());
    let outcome = tokio::time::timeout(
        LIMIT,
        AssertUnwindSafe(async {
            exercise(Arc::clone(&backend), config.clone(), "redis").await;
            exercise_runner(backend, config, "redis").await;
        })
        .catch_unwind(),
    )
    .await;
    testing::cleanup(&url, &namespace).await.unwrap();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("redis hung"),
    }
}
