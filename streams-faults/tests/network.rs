//! Network faults between the library and Redis, through a TCP proxy the
//! test controls ([`streams_faults::Proxy`]): latency, latency past the
//! response timeout, replies cut mid-way, resets, a partition that heals, a
//! partition ended by resets, and a server that refuses connections.
//!
//! 1. One manager under concurrent sends, reads, acks, moves and queries:
//!    no call outlives its timeouts, no reply reaches the wrong caller, and
//!    the same manager works again once the network does.
//! 2. Consumer processes behind the proxy, a producer straight to Redis:
//!    every message is handled at least once.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    ConsumerOpts, Delivered, GROUP, ProducerOpts, STREAM, Scenario, runner_options, starts_by,
    until,
};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use streams_conformance::checker::{Event, Recorder};
use streams_core::backend::{BackendLayer, Call, Layered};
use streams_core::runner::{CancellationToken, Settled};
use streams_core::{Manager, PeekQuery, StreamBackend, StreamError};
use streams_faults::Proxy;
use streams_redis::{RedisBackend, RedisConfig};
use tokio::task::JoinSet;

/// The managers' response timeout.
const RESPONSE: Duration = Duration::from_millis(500);
/// Their connect timeout.
const CONNECT: Duration = Duration::from_millis(500);
/// Their blocking reads' margin over the block time.
const MARGIN: Duration = Duration::from_millis(200);
/// The group's block time.
const BLOCK: Duration = Duration::from_millis(200);

/// Longest any call may take: three times the response and connect
/// timeouts together (a command may first wait for its connection to be
/// made again, with one retry), plus a blocking read's block and margin.
const BOUND: Duration = Duration::from_millis(3 * (500 + 500) + 200 + 200);

/// How long calls took, by operation, and what went wrong.
#[derive(Debug, Default)]
struct Timings {
    calls: Mutex<BTreeMap<String, Timing>>,
    problems: Mutex<Vec<String>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Timing {
    calls: u64,
    failed: u64,
    max: Duration,
}

/// Errors a network fault may cause: the connection failed or timed out,
/// or (for a move) another consumer took the message meanwhile. Any other
/// error would be a reply read wrong.
fn expected(e: &StreamError) -> bool {
    e.is_retryable() || matches!(e, StreamError::NotOwner { .. })
}

impl Timings {
    fn record(&self, what: &str, took: Duration, error: Option<&StreamError>) {
        {
            let mut calls = self.calls.lock().unwrap();
            let t = calls.entry(what.to_owned()).or_default();
            t.calls += 1;
            t.failed += u64::from(error.is_some());
            t.max = t.max.max(took);
        }
        let mut problems = self.problems.lock().unwrap();
        if took > BOUND {
            problems.push(format!("{what} took {took:?}, more than {BOUND:?}"));
        }
        if let Some(e) = error.filter(|e| !expected(e)) {
            problems.push(format!("{what} failed unexpectedly: {e}"));
        }
    }

    /// Runs and times a manager call.
    async fn time<T>(
        &self,
        what: &str,
        call: impl Future<Output = streams_core::Result<T>>,
    ) -> streams_core::Result<T> {
        let started = Instant::now();
        let result = call.await;
        self.record(what, started.elapsed(), result.as_ref().err());
        result
    }

    fn table(&self) -> String {
        let mut out = String::from("| call | calls | failed | longest |\n|---|---|---|---|\n");
        for (what, t) in self.calls.lock().unwrap().iter() {
            out.push_str(&format!(
                "| {what} | {} | {} | {:.0} ms |\n",
                t.calls,
                t.failed,
                t.max.as_secs_f64() * 1000.0
            ));
        }
        out
    }
}

/// Times every call that reaches the Redis backend.
#[derive(Debug, Clone)]
struct Timed {
    inner: RedisBackend,
    timings: Arc<Timings>,
}

impl BackendLayer for Timed {
    type Inner = RedisBackend;

    fn inner(&self) -> &RedisBackend {
        &self.inner
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        op: BoxFuture<'a, streams_core::Result<T>>,
    ) -> BoxFuture<'a, streams_core::Result<T>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = op.await;
            self.timings
                .record(call.operation, started.elapsed(), result.as_ref().err());
            result
        })
    }
}

fn upstream(s: &Scenario) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], s.server.port()))
}

/// Injects the network faults one after another, recording each, with
/// `calm` of normal service after each.
async fn inject_faults(s: &Scenario, proxy: &Proxy, calm: Duration) {
    let sleep = |ms: u64| tokio::time::sleep(Duration::from_millis(ms));

    // Latency well under the response timeout, then past it: calls time
    // out, and their replies come later.
    for delay in [150, 800] {
        let what = format!("delay {delay} ms");
        s.recorder.fault(&what);
        proxy.delay(Duration::from_millis(delay));
        sleep(2000).await;
        proxy.pass();
        s.recorder.healed(&what);
        tokio::time::sleep(calm).await;
    }

    // Replies cut after 3 bytes, then the connection reset.
    s.recorder.fault("8 replies cut mid-way");
    let mut cut = 0;
    for _ in 0..8 {
        proxy.reset_mid_reply(3);
        let deadline = Instant::now() + Duration::from_secs(3);
        while proxy.mid_reply_armed() && Instant::now() < deadline {
            sleep(10).await;
        }
        cut += u32::from(!proxy.mid_reply_armed());
        sleep(250).await;
    }
    proxy.pass();
    s.recorder.healed("8 replies cut mid-way");
    assert!(cut >= 4, "only {cut} replies were cut: too little traffic");
    tokio::time::sleep(calm).await;

    s.recorder.fault("every connection reset, 3 times");
    for _ in 0..3 {
        proxy.reset();
        sleep(300).await;
    }
    s.recorder.healed("every connection reset, 3 times");
    tokio::time::sleep(calm).await;

    // A partition that heals: what was held flows again.
    s.recorder.fault("blackhole 1.5 s, healed");
    proxy.blackhole();
    sleep(1500).await;
    proxy.pass();
    s.recorder.healed("blackhole 1.5 s, healed");
    tokio::time::sleep(calm).await;

    // A partition ended by resets, as keepalives would end it.
    s.recorder.fault("blackhole 1 s, then reset");
    proxy.blackhole();
    sleep(1000).await;
    proxy.reset();
    proxy.pass();
    s.recorder.healed("blackhole 1 s, then reset");
    tokio::time::sleep(calm).await;

    // The server is gone: connections reset, new ones refused.
    s.recorder.fault("down 1.5 s");
    proxy.down();
    sleep(1500).await;
    proxy.up();
    s.recorder.healed("down 1.5 s");
    tokio::time::sleep(calm).await;
}

/// 1. One manager, many concurrent calls, every network fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_faults_bound_every_call_and_cross_no_replies() {
    let _serial = common::SERIAL.lock().await;
    let s = Scenario::new("network-calls", &[]);
    let proxy = Proxy::start(upstream(&s)).await.unwrap();
    let config = RedisConfig::new(proxy.url())
        .with_response_timeout(RESPONSE)
        .with_connect_timeout(CONNECT)
        .with_block_margin(MARGIN)
        .with_reconnect_retries(1);
    let timings = Arc::new(Timings::default());
    let backend = Layered(Timed {
        inner: RedisBackend::from_config(config).await.unwrap(),
        timings: Arc::clone(&timings),
    });
    // A manual consumer and a runner share the backend (its connections).
    let m = Manager::new(backend.clone(), s.manager_config("net-m")).unwrap();
    let r = Manager::new(backend, s.manager_config("net-r")).unwrap();
    let claim_idle = Duration::from_secs(1);
    s.create_group(&m, claim_idle).await;

    // Streams `len-i` of `i` entries each, whose lengths and newest entries
    // tell every answer apart.
    let direct = s
        .manager_on(RedisConfig::new(s.server.url()), "setup")
        .await;
    for i in 1..=8u64 {
        for _ in 0..i {
            direct
                .send_message(&format!("len-{i}"), json!({"len": i}), None)
                .await
                .unwrap();
        }
    }

    let runner = s.runner("net-r", r.clone(), runner_options(claim_idle));
    let stop = CancellationToken::new();
    let sent: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let crossed: Arc<Mutex<Vec<String>>> = Arc::default();
    let delivered: Arc<Mutex<Vec<Delivered>>> = Arc::default();
    let mut tasks = JoinSet::new();

    // Senders: distinct keys, each id kept with its key.
    let senders = Arc::new(Recorder::create(s.history_dir(), "senders").unwrap());
    for w in 0..6 {
        let (m, timings, sent, history, stop) = (
            m.clone(),
            Arc::clone(&timings),
            Arc::clone(&sent),
            Arc::clone(&senders),
            stop.clone(),
        );
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() {
                let key = format!("s{w}-{n}");
                let data = json!({"key": key, "fail_first": n % 7 == 3, "dead": n % 23 == 5});
                let send = m.send_message(STREAM, data, None);
                if let Ok(id) = timings.time("api send_message", send).await {
                    history.sent(&key, STREAM, &id);
                    sent.lock().unwrap().push((id, key));
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    // Askers: lengths and newest entries of the `len-i` streams.
    for w in 0..3u64 {
        let (m, timings, crossed, stop) = (
            m.clone(),
            Arc::clone(&timings),
            Arc::clone(&crossed),
            stop.clone(),
        );
        tasks.spawn(async move {
            let mut n = w;
            while !stop.is_cancelled() {
                let i = n % 8 + 1;
                n += 1;
                let stream = format!("len-{i}");
                if let Ok(len) = m.backend().len(&m.keys().stream(&stream)).await {
                    if len != i {
                        crossed
                            .lock()
                            .unwrap()
                            .push(format!("the length of {stream} came back as {len}"));
                    }
                }
                let query = PeekQuery::new(&stream).newest_first().with_count(1);
                if let Ok(peek) = timings
                    .time("api peek_messages", m.peek_messages(&query))
                    .await
                {
                    let got = peek
                        .first()
                        .and_then(|p| p.data.get("len"))
                        .and_then(serde_json::Value::as_u64);
                    if got != Some(i) {
                        crossed
                            .lock()
                            .unwrap()
                            .push(format!("the newest entry of {stream} came back as {got:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    // A consumer settling by hand: acks, retries and dead letters, each
    // timed. What it fails to settle, the runner claims.
    {
        let (m, timings, delivered, stop) = (
            m.clone(),
            Arc::clone(&timings),
            Arc::clone(&delivered),
            stop.clone(),
        );
        let history = Recorder::create(s.history_dir(), "net-m").unwrap();
        tasks.spawn(async move {
            while !stop.is_cancelled() {
                let read = m.read_messages(GROUP, Some(4), Some(BLOCK));
                let Ok(read) = timings.time("api read_messages", read).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                for msg in read {
                    let d = Delivered::of(&msg);
                    let deliveries = msg.delivery.as_ref().map_or(1, |d| d.deliveries);
                    history.started(&d.key, STREAM, &msg.id, "net-m", deliveries);
                    let flag = |name: &str| msg.data.get(name).and_then(Value::as_bool);
                    let (done, failed) = if flag("dead") == Some(true) {
                        let dead = m.send_to_dlq(&msg, "asked to", Some(GROUP));
                        let done = timings.time("api send_to_dlq", dead).await;
                        (done.map(|_| Settled::DeadLettered), Settled::Failed)
                    } else if flag("fail_first") == Some(true) && msg.retry_count == 0 {
                        let retry = m.retry_message(&msg);
                        let done = timings.time("api retry_message", retry).await;
                        let done = done.map(|d| if d { Settled::Retried } else { Settled::Failed });
                        (done, Settled::Failed)
                    } else {
                        let ack = m.acknowledge(&msg, GROUP);
                        let done = timings.time("api acknowledge", ack).await;
                        let done = done.map(|was| {
                            if was {
                                Settled::Acked
                            } else {
                                Settled::AckUnconfirmed
                            }
                        });
                        // Whether it was applied is unknown.
                        (done, Settled::AckFailed)
                    };
                    let how = match done {
                        Ok(how) => how,
                        Err(StreamError::NotOwner { .. }) => Settled::Taken,
                        Err(_) => failed,
                    };
                    history.settled(&d.key, STREAM, &msg.id, "net-m", how);
                    delivered.lock().unwrap().push(d);
                }
            }
        });
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let accepted_before = proxy.accepted();
    inject_faults(&s, &proxy, Duration::from_millis(500)).await;
    proxy.pass();

    // The same manager works again, without being rebuilt.
    let healed = Instant::now();
    let mut attempt = 0;
    loop {
        let key = format!("recovery-{attempt}");
        let send = m.send_message(STREAM, json!({"key": key}), None);
        if let Ok(id) = timings.time("api send_message", send).await {
            s.recorder.sent(&key, STREAM, &id);
            sent.lock().unwrap().push((id, key));
            break;
        }
        attempt += 1;
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "the manager did not recover"
        );
    }
    let recovered = healed.elapsed();
    assert!(m.readiness().await.unwrap().ready);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }

    let end = s.drain(0, Duration::from_secs(60)).await;
    let delivered_by_runner = runner.delivered.lock().unwrap().clone();
    let summary = runner.stop().await;
    let table = timings.table();
    eprintln!(
        "network-calls: runner: {summary}\n\
         recovered {recovered:?} after the last fault; proxy: {} connections ({} during the faults), \
         {} reset\n{table}",
        proxy.accepted(),
        proxy.accepted() - accepted_before,
        proxy.resets()
    );

    // No call outlived its bound, none failed but as a network fault may.
    let problems = timings.problems.lock().unwrap().clone();
    assert!(problems.is_empty(), "{problems:#?}\n{table}");
    assert!(proxy.resets() >= 10, "the faults reset connections");

    // No reply reached another caller: every answer was the caller's own.
    let crossed = crossed.lock().unwrap().clone();
    assert!(crossed.is_empty(), "{crossed:#?}");
    let stream: Vec<(String, HashMap<String, redis::Value>)> = {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(format!("{}:{{{STREAM}}}", s.namespace))
            .arg("-")
            .arg("+")
            .query_async(&mut s.redis().await)
            .await
            .unwrap();
        reply.ids.into_iter().map(|e| (e.id, e.map)).collect()
    };
    let stored: HashMap<String, String> = stream
        .into_iter()
        .map(|(id, fields)| {
            let data: String = redis::from_redis_value(fields["data"].clone()).unwrap();
            let data: serde_json::Value = serde_json::from_str(&data).unwrap();
            (id, data["key"].as_str().unwrap().to_owned())
        })
        .collect();
    let sent = sent.lock().unwrap().clone();
    let ids: HashSet<&String> = sent.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), sent.len(), "two sends were given one id");
    for (id, key) in &sent {
        assert_eq!(
            stored.get(id),
            Some(key),
            "the send of {key} returned {id}, another entry's id"
        );
    }
    let mut reads = delivered.lock().unwrap().clone();
    reads.extend(delivered_by_runner);
    let mut checked = 0;
    for d in reads.iter().filter(|d| !d.from_retry) {
        assert_eq!(
            stored.get(&d.id),
            Some(&d.key),
            "entry {} was delivered with another entry's payload",
            d.id
        );
        checked += 1;
    }
    eprintln!(
        "network-calls: {} sends and {checked} deliveries matched their entries",
        sent.len()
    );

    let report = s.report(&end);
    report.assert_ok("network-calls");
}

/// 2. Consumer processes behind the proxy; at-least-once holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_behind_a_faulty_network_lose_nothing() {
    let _serial = common::SERIAL.lock().await;
    let s = Scenario::new("network-consumers", &[]);
    let proxy = Proxy::start(upstream(&s)).await.unwrap();
    let o = ConsumerOpts {
        timeout_ms: RESPONSE.as_millis() as u64,
        ..ConsumerOpts::default()
    };
    let mut c1 = s.consumer_via("c1", &proxy.url(), &o);
    let mut c2 = s.consumer_via("c2", &proxy.url(), &o);
    let mut p = s.producer(
        "p1",
        1500,
        &ProducerOpts {
            rate: 100,
            work_ms: 5,
            fail_pct: 2.0,
            poison_every: 500,
            ..ProducerOpts::default()
        },
    );
    until("the consumers to be busy", Duration::from_secs(30), || {
        let checker = s.checker();
        starts_by(&checker, "c1") >= 10 && starts_by(&checker, "c2") >= 10
    })
    .await;
    inject_faults(&s, &proxy, Duration::from_millis(500)).await;
    proxy.pass();
    tokio::task::block_in_place(|| p.wait(Duration::from_secs(60)));
    let end = s.drain(0, Duration::from_secs(60)).await;
    tokio::task::block_in_place(|| {
        c1.stop();
        c2.stop();
    });
    eprintln!(
        "network-consumers: proxy: {} connections, {} reset",
        proxy.accepted(),
        proxy.resets()
    );
    let report = s.report(&end);
    report.assert_ok("network-consumers");
    assert_eq!(report.messages, 1500);
    assert_eq!(report.dead_lettered, 3, "the poison messages: {report}");

    // Both consumers rode the faults out and said so.
    for c in ["c1", "c2"] {
        let summary = s
            .checker()
            .events()
            .iter()
            .find_map(|e| match e {
                Event::Note { who, text, .. } if who == c && text.starts_with("summary") => {
                    Some(text.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{c}'s summary"));
        eprintln!("network-consumers: {c}: {summary}");
        assert!(
            !summary.contains("errors 0,"),
            "{c} felt no fault: {summary}"
        );
    }
}
