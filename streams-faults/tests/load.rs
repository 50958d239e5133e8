//! Load with faults at once, and a soak with periodic consumer kills.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{ConsumerOpts, ProducerOpts, Scenario, starts_by, until};

/// 11. Four producer and four consumer processes, 100,000 messages, 5% of
/// attempts failing at random and 0.5% poison, one consumer killed and one
/// Redis restart (AOF, `appendfsync always`) during the run: every message
/// produced is acknowledged or dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_faults_accounts_for_every_message() {
    let _serial = common::SERIAL.lock().await;
    let total: u64 = std::env::var("XNAI_LOAD_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let per_producer = total / 4;
    let mut s = Scenario::new(
        "load-with-faults",
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    let o = ConsumerOpts {
        concurrency: 32,
        claim_idle_ms: 2000,
        timeout_ms: 2000,
        ..ConsumerOpts::default()
    };
    let mut consumers: Vec<_> = (1..=4).map(|i| s.consumer(&format!("c{i}"), &o)).collect();
    let mut producers: Vec<_> = (1..=4)
        .map(|i| {
            s.producer(
                &format!("p{i}"),
                per_producer,
                &ProducerOpts {
                    fail_pct: 5.0,
                    poison_every: 200,
                    ..ProducerOpts::default()
                },
            )
        })
        .collect();
    let started = Instant::now();
    let progress = |s: &Scenario| {
        (1..=4)
            .map(|i| starts_by(&s.checker(), &format!("c{i}")))
            .sum::<usize>()
    };
    until("a third of the work", Duration::from_secs(300), || {
        progress(&s) as u64 >= total / 3
    })
    .await;
    s.recorder.fault("SIGKILL consumer c1");
    consumers[0].kill();
    until("two thirds of the work", Duration::from_secs(300), || {
        progress(&s) as u64 >= total * 2 / 3
    })
    .await;
    s.recorder
        .fault("SIGKILL redis-server (appendfsync always)");
    s.server.kill().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.server.restart().unwrap();
    s.recorder.healed("redis-server restarted");
    for p in &mut producers {
        p.wait(Duration::from_secs(300));
    }
    let end = s.drain(0, Duration::from_secs(300)).await;
    for c in &mut consumers[1..] {
        c.stop();
    }
    let took = started.elapsed();
    let report = s.report(&end);
    eprintln!("load-with-faults: {total} messages in {took:?}");
    report.assert_ok("load-with-faults");
    assert_eq!(report.messages, total);
    assert_eq!(
        report.acked + report.dead_lettered,
        report.messages,
        "produced != acked + dead-lettered: {report}"
    );
    // Every poison message (one in 200) and almost nothing else.
    let poison = 4 * (per_producer / 200);
    assert!(
        report.dead_lettered >= poison && report.dead_lettered <= poison + poison / 10,
        "{report}"
    );
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Open file descriptors of a process (sockets included).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// 12. A soak: steady traffic for 60 s (`XNAI_SOAK_SECS`) while one
/// consumer is killed and restarted every 10 s. The long-lived consumer's
/// memory and descriptors and the server's client count stay flat, and
/// nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_periodic_kills_stays_flat_and_loses_nothing() {
    let _serial = common::SERIAL.lock().await;
    let secs: u64 = std::env::var("XNAI_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let s = Scenario::new("soak", &[]);
    let o = ConsumerOpts {
        claim_idle_ms: 1000,
        ..ConsumerOpts::default()
    };
    let rate = 200;
    let mut steady = s.consumer("steady", &o);
    let mut victim = s.consumer("victim", &o);
    let mut p = s.producer(
        "p1",
        rate * secs,
        &ProducerOpts {
            rate,
            work_ms: 5,
            fail_pct: 2.0,
            ..ProducerOpts::default()
        },
    );
    let mut conn = s.redis().await;
    let clients = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let mut samples = Vec::new();
    let begin = Instant::now();
    let mut kills = 0;
    let mut next_kill = Duration::from_secs(10);
    while begin.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if begin.elapsed() >= next_kill {
            s.recorder.fault("SIGKILL victim");
            victim.kill();
            kills += 1;
            victim = s.consumer("victim", &o);
            next_kill += Duration::from_secs(10);
        }
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut conn)
            .await
            .unwrap();
        samples.push((
            begin.elapsed(),
            rss_kib(steady.pid()),
            open_fds(steady.pid()),
            clients(info),
        ));
    }
    p.wait(Duration::from_secs(60));
    let end = s.drain(0, Duration::from_secs(60)).await;
    steady.stop();
    victim.stop();
    let report = s.report(&end);
    report.assert_ok("soak");
    assert!(kills >= secs / 10 - 1, "{kills} kills");
    for (t, rss, fds, clients) in &samples {
        eprintln!("soak at {t:?}: steady RSS {rss} KiB, {fds} fds; server clients {clients}");
    }
    // Flat: after a warm-up of a quarter of the run, the last samples are
    // not above the warm-up's by more than noise.
    let warm = samples.len() / 4;
    let (_, rss0, fds0, clients0) = samples[warm];
    let tail = &samples[samples.len().saturating_sub(3)..];
    for (t, rss, fds, clients) in tail {
        assert!(
            *rss <= rss0 + rss0 / 5 + 2048,
            "steady's RSS grew from {rss0} to {rss} KiB at {t:?}"
        );
        assert!(
            *fds <= fds0 + 2,
            "steady's descriptors grew from {fds0} to {fds} at {t:?}"
        );
        assert!(
            *clients <= clients0 + 3,
            "the server's clients grew from {clients0} to {clients} at {t:?}"
        );
    }
}
