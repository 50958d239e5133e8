//! Consumer faults, with consumers as separate processes: killed mid-batch,
//! restarted under the same name, frozen past their lease, and killed over
//! and over by one message.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use common::{ConsumerOpts, GROUP, ProducerOpts, STREAM, Scenario, starts_by, until};
use streams_conformance::checker::{Event, now_us};

/// 1. A consumer process is SIGKILLed mid-batch; the others claim its work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_consumer_work_is_claimed_by_the_others() {
    let _serial = common::SERIAL.lock().await;
    let s = Scenario::new("consumer-sigkill", &[]);
    let o = ConsumerOpts::default();
    let mut c1 = s.consumer("c1", &o);
    let mut c2 = s.consumer("c2", &o);
    let mut c3 = s.consumer("c3", &o);
    let mut p = s.producer(
        "p1",
        1500,
        &ProducerOpts {
            work_ms: 20,
            ..ProducerOpts::default()
        },
    );
    until("c1 to be busy", Duration::from_secs(30), || {
        starts_by(&s.checker(), "c1") >= 40
    })
    .await;
    s.recorder.fault("SIGKILL c1");
    c1.kill();
    p.wait(Duration::from_secs(60));
    let end = s.drain(0, Duration::from_secs(60)).await;
    c2.stop();
    c3.stop();
    let report = s.report(&end);
    report.assert_ok("consumer-sigkill");
    assert!(
        report.in_flight > 0,
        "c1 was killed between batches: {report}"
    );

    // What c1 started and never settled was handled by c2 or c3, unless
    // c1's handler had asked for its ack (killed before recording the
    // settlement: the report found nothing lost or pending, so the ack
    // was applied).
    let checker = s.checker();
    let mut orphaned = HashSet::new();
    for e in checker.events() {
        match e {
            Event::Started { key, consumer, .. } if consumer == "c1" => {
                orphaned.insert(key.clone());
            }
            Event::Settled {
                key, consumer, how, ..
            } if consumer == "c1" && how != "failed" => {
                orphaned.remove(key);
            }
            _ => {}
        }
    }
    assert!(!orphaned.is_empty());
    for key in &orphaned {
        // Settled by c2 or c3 (a retry or a dead-letter move is settled
        // too: under load a handler may overrun its timeout), or acked by
        // a handler of theirs whose settlement the report then proved
        // (nothing pending at the end).
        let taken_over = checker.events().iter().any(|e| match e {
            Event::Settled {
                key: k,
                consumer,
                how,
                ..
            } => {
                k == key
                    && consumer != "c1"
                    && matches!(
                        how.as_str(),
                        "acked" | "ack_unconfirmed" | "retried" | "dead_lettered"
                    )
            }
            Event::Finished {
                key: k,
                consumer,
                outcome,
                ..
            } => k == key && consumer != "c1" && outcome == "ack",
            _ => false,
        }) || end.dead_lettered.contains(key);
        let acked_by_c1 = checker.events().iter().any(|e| {
            matches!(e, Event::Finished { key: k, consumer, outcome, .. }
                if k == key && consumer == "c1" && outcome == "ack")
        });
        if !(taken_over || acked_by_c1) {
            let history: Vec<&Event> = checker
                .events()
                .iter()
                .filter(|e| match e {
                    Event::Started { key: k, .. }
                    | Event::Finished { key: k, .. }
                    | Event::Settled { key: k, .. } => k == key,
                    _ => false,
                })
                .collect();
            panic!("{key}, abandoned by c1, was not settled by another consumer: {history:?}");
        }
    }
}

/// 2. A consumer restarted under the same name resumes its own pending
/// work before anything new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_consumer_resumes_its_own_pending_work_first() {
    let _serial = common::SERIAL.lock().await;
    let s = Scenario::new("consumer-restart", &[]);
    // Nobody else claims: the work waits for its owner.
    let o = ConsumerOpts {
        concurrency: 4,
        claim_idle_ms: 60_000,
        ..ConsumerOpts::default()
    };
    let mut p = s.producer(
        "p1",
        300,
        &ProducerOpts {
            work_ms: 30,
            ..ProducerOpts::default()
        },
    );
    let mut c1 = s.consumer("c1", &o);
    until("c1 to be busy", Duration::from_secs(30), || {
        starts_by(&s.checker(), "c1") >= 20
    })
    .await;
    s.recorder.fault("SIGKILL c1");
    c1.kill();
    p.wait(Duration::from_secs(30));

    // Its pending list, as the server keeps it.
    let mut conn = s.redis().await;
    let key = format!("{}:{{{STREAM}}}", s.namespace);
    let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(&key)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(1000)
        .arg("c1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let owned: BTreeSet<String> = pending.ids.iter().map(|p| p.id.clone()).collect();
    assert!(!owned.is_empty(), "c1 held nothing when killed");

    let restarted = now_us();
    s.recorder.healed("c1 restarted");
    let mut c1 = s.consumer("c1", &o);
    let end = s.drain(0, Duration::from_secs(60)).await;
    c1.stop();
    let report = s.report(&end);
    report.assert_ok("consumer-restart");

    let firsts: BTreeSet<String> = s
        .checker()
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Started { t, id, .. } if *t >= restarted => Some(id.clone()),
            _ => None,
        })
        .take(owned.len())
        .collect();
    assert_eq!(
        firsts, owned,
        "the restarted consumer did not start with its own pending entries"
    );
}

/// 3. A consumer frozen (SIGSTOP) past its lease is claimed from; when it
/// wakes (SIGCONT), its late moves are fenced and reported, and nothing is
/// settled twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_consumer_late_moves_are_fenced() {
    let _serial = common::SERIAL.lock().await;
    let s = Scenario::new("consumer-sigstop", &[]);
    let o = ConsumerOpts {
        concurrency: 8,
        claim_idle_ms: 800,
        ..ConsumerOpts::default()
    };
    // Every first attempt asks for a retry: a move, which is fenced.
    let mut p = s.producer(
        "p1",
        200,
        &ProducerOpts {
            work_ms: 300,
            fail_first: true,
            ..ProducerOpts::default()
        },
    );
    let mut c1 = s.consumer("c1", &o);
    until("c1 to be busy", Duration::from_secs(30), || {
        starts_by(&s.checker(), "c1") >= 8
    })
    .await;
    let mut c2 = s.consumer("c2", &o);
    s.recorder.fault("SIGSTOP c1");
    c1.signal("STOP");
    // Past the lease: c2 claims what c1 holds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c1.signal("CONT");
    s.recorder.healed("SIGCONT c1");
    p.wait(Duration::from_secs(60));
    let end = s.drain(0, Duration::from_secs(90)).await;
    c1.stop();
    c2.stop();
    let report = s.report(&end);
    report.assert_ok("consumer-sigstop");
    assert!(
        report.fenced > 0,
        "the frozen consumer made no late move that was fenced: {report}"
    );
    // Its summary reports them.
    let summary = s
        .checker()
        .events()
        .iter()
        .find_map(|e| match e {
            Event::Note { who, text, .. } if who == "c1" && text.starts_with("summary") => {
                Some(text.clone())
            }
            _ => None,
        })
        .expect("c1's summary");
    assert!(!summary.contains(" lost 0,"), "{summary}");
}

/// 4. A crash loop: one message kills every consumer that takes it. It
/// reaches the DLQ after the retry limit, and none of its batch-mates do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_dead_letters_only_the_culprit() {
    let _serial = common::SERIAL.lock().await;
    let s = Scenario::new("crash-loop", &[]);
    let o = ConsumerOpts {
        concurrency: 4,
        claim_idle_ms: 500,
        retry_limit: 2,
        ..ConsumerOpts::default()
    };
    let mut p = s.producer(
        "p1",
        60,
        &ProducerOpts {
            work_ms: 50,
            crash: Some(10),
            ..ProducerOpts::default()
        },
    );
    let mut consumers = vec![s.consumer("c1", &o), s.consumer("c2", &o)];
    p.wait(Duration::from_secs(30));
    // A supervisor: a consumer that died is started again, as a deployment
    // would; every death is a fault.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut crashes = 0;
    let end = loop {
        for (i, c) in consumers.iter_mut().enumerate() {
            if c.exited() {
                crashes += 1;
                s.recorder.fault(&format!("c{} crashed", i + 1));
                *c = s.consumer(&format!("c{}", i + 1), &o);
            }
        }
        let m = s.manager("checker").await;
        if let Some(end) = s.final_state(&m).await {
            if end.pending == 0 && s.all_settled(0, &end.dead_lettered) {
                break end;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the crash loop did not end"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for c in &mut consumers {
        c.stop();
    }
    let report = s.report(&end);
    report.assert_ok("crash-loop");
    assert_eq!(
        end.dead_lettered,
        ["p1-10"],
        "only the culprit is dead-lettered"
    );
    // Retry limit 2: handed out 3 times, so it killed 3 consumers.
    assert_eq!(crashes, 3, "{report}");
}
