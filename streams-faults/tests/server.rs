//! Server faults under load: Redis killed and restarted with AOF, restarted
//! empty without persistence, and frozen past the timeouts.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{ConsumerOpts, GROUP, ProducerOpts, STREAM, Scenario, starts_by, until};
use serde_json::json;
use streams_conformance::checker::now_us;
use streams_core::{ConsumerGroupConfig, StreamError};

/// The entries pending in the group, as `(id, consumer)`, sorted.
async fn pending_list(s: &Scenario) -> Vec<(String, String)> {
    let mut conn = s.redis().await;
    let key = format!("{}:{{{STREAM}}}", s.namespace);
    let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(&key)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(100_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut list: Vec<(String, String)> =
        reply.ids.into_iter().map(|p| (p.id, p.consumer)).collect();
    list.sort();
    list
}

/// CPU time (user + system) a process has used, from `/proc`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// 5. Redis with AOF `appendfsync always` is SIGKILLed and restarted under
/// load: every acknowledged send survives, and so do the pending lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aof_server_killed_under_load_keeps_sends_and_pending_lists() {
    let _serial = common::SERIAL.lock().await;
    let mut s = Scenario::new(
        "redis-sigkill-aof",
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    let o = ConsumerOpts::default();
    let mut c1 = s.consumer("c1", &o);
    let mut c2 = s.consumer("c2", &o);
    let mut p = s.producer(
        "p1",
        3000,
        &ProducerOpts {
            rate: 600,
            work_ms: 20,
            ..ProducerOpts::default()
        },
    );
    until("work under way", Duration::from_secs(30), || {
        starts_by(&s.checker(), "c1") + starts_by(&s.checker(), "c2") >= 300
    })
    .await;
    // Freeze the consumers for a moment so the pending lists hold still,
    // and read them just before the crash.
    c1.signal("STOP");
    c2.signal("STOP");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = pending_list(&s).await;
    s.recorder
        .fault("SIGKILL redis-server (appendfsync always)");
    s.server.kill().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.server.restart().unwrap();
    s.recorder.healed("redis-server restarted");
    let after = pending_list(&s).await;
    c1.signal("CONT");
    c2.signal("CONT");
    assert!(!before.is_empty(), "nothing was pending at the crash");
    assert_eq!(
        after, before,
        "the pending lists changed across the restart"
    );

    p.wait(Duration::from_secs(60));
    let end = s.drain(0, Duration::from_secs(60)).await;
    c1.stop();
    c2.stop();
    let report = s.report(&end);
    report.assert_ok("redis-sigkill-aof");
}

/// 6. Redis without persistence restarts empty under load: the groups are
/// recreated, nothing sent afterwards is lost, and nobody spins while the
/// server is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_restart_recreates_groups_and_loses_nothing_sent_after() {
    let _serial = common::SERIAL.lock().await;
    let mut s = Scenario::new("redis-restart-empty", &[]);
    let o = ConsumerOpts::default();
    let mut c1 = s.consumer("c1", &o);
    let mut c2 = s.consumer("c2", &o);
    let mut p = s.producer(
        "p1",
        2400,
        &ProducerOpts {
            rate: 400,
            work_ms: 10,
            ..ProducerOpts::default()
        },
    );
    until("work under way", Duration::from_secs(30), || {
        starts_by(&s.checker(), "c1") + starts_by(&s.checker(), "c2") >= 200
    })
    .await;
    s.recorder.fault("SIGKILL redis-server (no persistence)");
    s.server.kill().unwrap();
    let cpu = [cpu_time(c1.pid()), cpu_time(c2.pid()), cpu_time(p.pid())];
    let down = Duration::from_secs(2);
    tokio::time::sleep(down).await;
    let used: Vec<Duration> = [c1.pid(), c2.pid(), p.pid()]
        .iter()
        .zip(cpu)
        .map(|(pid, before)| cpu_time(*pid).saturating_sub(before))
        .collect();
    s.server.restart().unwrap();
    let healed = now_us();
    s.recorder.healed("redis-server restarted empty");
    for (who, used) in ["c1", "c2", "p1"].iter().zip(&used) {
        assert!(
            *used < down / 5,
            "{who} used {used:?} of CPU in {down:?} while the server was down: it spins"
        );
    }

    p.wait(Duration::from_secs(60));
    let end = s.drain(healed, Duration::from_secs(60)).await;
    c1.stop();
    c2.stop();
    let report = s.report(&end);
    report.assert_ok("redis-restart-empty");
    assert!(
        report.messages > 500,
        "too little was sent after the restart: {report}"
    );
    // The group exists again on the new server, recreated by its readers.
    let m = s.manager("checker").await;
    let health = m.group_health(GROUP).await.unwrap();
    assert!(
        health.streams.iter().all(|st| st.group_exists),
        "{health:?}"
    );
}

/// 7. Redis frozen (SIGSTOP) longer than the timeouts, then resumed: calls
/// fail with timeouts in bounded time, and the same manager recovers
/// without being rebuilt; consumers lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_times_out_calls_and_the_same_manager_recovers() {
    let _serial = common::SERIAL.lock().await;
    let s = Scenario::new("redis-sigstop", &[]);
    let o = ConsumerOpts::default();
    let mut c1 = s.consumer("c1", &o);
    let mut c2 = s.consumer("c2", &o);
    let mut p = s.producer(
        "p1",
        2000,
        &ProducerOpts {
            rate: 400,
            work_ms: 10,
            ..ProducerOpts::default()
        },
    );

    // The test's own manager, with a short response timeout.
    let timeout = Duration::from_millis(500);
    let config = streams_redis::RedisConfig::new(s.server.url())
        .with_response_timeout(timeout)
        .with_connect_timeout(timeout)
        .with_block_margin(Duration::from_millis(300));
    let backend = streams_redis::RedisBackend::from_config(config)
        .await
        .unwrap();
    let m = streams_core::Manager::new(
        backend,
        streams_core::ManagerConfig::default()
            .with_namespace(s.namespace.clone())
            .with_consumer_id("probe"),
    )
    .unwrap();
    let probe_group =
        ConsumerGroupConfig::new("probe", ["probe-stream"]).with_block(Duration::from_millis(100));
    m.create_consumer_group(&probe_group).await.unwrap();
    m.send_message("probe-stream", json!({"n": 0}), None)
        .await
        .unwrap();
    let held = m.read_messages("probe", None, None).await.unwrap();
    assert_eq!(held.len(), 1);

    until("work under way", Duration::from_secs(30), || {
        starts_by(&s.checker(), "c1") + starts_by(&s.checker(), "c2") >= 200
    })
    .await;
    s.recorder.fault("SIGSTOP redis-server");
    s.server.pause().unwrap();
    let frozen = Instant::now();
    // Every kind of call gives up in bounded time, with a timeout or
    // connection error, all at once.
    let bound = Duration::from_secs(3);
    let (send, read, ack, retry) = tokio::join!(
        async {
            let t = Instant::now();
            (
                m.send_message("probe-stream", json!({"n": 1}), None)
                    .await
                    .err(),
                t.elapsed(),
            )
        },
        async {
            let t = Instant::now();
            (
                m.read_messages("probe", None, None).await.err(),
                t.elapsed(),
            )
        },
        async {
            let t = Instant::now();
            (m.acknowledge(&held[0], "probe").await.err(), t.elapsed())
        },
        async {
            let t = Instant::now();
            (m.retry_message(&held[0]).await.err(), t.elapsed())
        },
    );
    for (what, (err, took)) in [
        ("send", send),
        ("read", read),
        ("ack", ack),
        ("retry", retry),
    ] {
        let err = err.unwrap_or_else(|| panic!("{what} succeeded against a frozen server"));
        assert!(
            matches!(
                err,
                StreamError::Timeout { .. } | StreamError::Connection { .. }
            ),
            "{what}: {err:?}"
        );
        assert!(took < bound, "{what} took {took:?} (bound {bound:?})");
    }
    let remaining = Duration::from_secs(3).saturating_sub(frozen.elapsed());
    tokio::time::sleep(remaining).await;
    s.server.resume().unwrap();
    s.recorder.healed("SIGCONT redis-server");

    // The same manager works again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match m.send_message("probe-stream", json!({"n": 2}), None).await {
            Ok(_) => break,
            Err(e) => {
                assert!(e.is_retryable(), "{e:?}");
                assert!(
                    Instant::now() < deadline,
                    "the manager did not recover: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // (Commands sent during the freeze ran when the server woke: a
    // timeout says the outcome is unknown, not that nothing happened.)
    m.acknowledge(&held[0], "probe").await.unwrap();
    let more = m.read_messages("probe", None, None).await.unwrap();
    assert!(!more.is_empty());

    p.wait(Duration::from_secs(60));
    let end = s.drain(0, Duration::from_secs(60)).await;
    c1.stop();
    c2.stop();
    let report = s.report(&end);
    report.assert_ok("redis-sigstop");
}
