//! The consume runner: outcomes, concurrency, leases, shutdown, typed
//! payloads, per-group policies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use streams_core::runner::{
    CancellationToken, ConsumeOptions, ConsumeSummary, Job, Outcome, Settled,
};
use streams_core::{DlqConfig, RetryPolicy, StreamManager, StreamManagerExt};

use crate::support::{TestContext, TestManager, ids, pending_all, send_n};

/// Options for cases: quick ticks, a short grace.
fn quick() -> ConsumeOptions {
    ConsumeOptions::default()
        .poll(Duration::from_millis(50))
        .promote_interval(Duration::from_millis(50))
        .grace(Duration::from_secs(5))
}

/// A group whose retries fall due at once (limit `limit`).
fn quick_retries(
    ctx: &TestContext,
    name: &str,
    streams: &[&str],
    limit: u32,
) -> streams_core::ConsumerGroupConfig {
    ctx.group(name, streams).with_retry(RetryPolicy::new(
        limit,
        Duration::from_millis(10),
        Duration::from_millis(10),
    ))
}

/// Cancels `stop` once `done` reaches `n` (or after 20 s, failing the wait).
fn stop_after(done: &Arc<AtomicUsize>, n: usize, stop: &CancellationToken) {
    let (done, stop) = (Arc::clone(done), stop.clone());
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        while done.load(Ordering::SeqCst) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
    });
}

/// Every message is handled once and acknowledged; the summary counts it;
/// nothing is left pending. The runner works through `Arc<dyn
/// StreamManager>`.
pub async fn consume_handles_and_acks_everything(ctx: &TestContext) {
    let concrete = ctx.manager("w");
    ctx.create_group(&concrete, "g", &["s1", "s2"]).await;
    let mut sent = send_n(&concrete, "s1", 10).await;
    sent.extend(send_n(&concrete, "s2", 10).await);
    let m: Arc<dyn StreamManager> = Arc::new(concrete);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    stop_after(&done, 20, &stop);
    let summary = m
        .consume("g", {
            let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
            move |job: Job<Value>| {
                let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
                async move {
                    seen.lock().unwrap().push(job.id().to_owned());
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                }
            }
        })
        .options(quick().concurrency(4))
        .shutdown_on(stop)
        .await
        .unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    sent.sort();
    assert_eq!(seen, sent, "each message handled once");
    assert_eq!((summary.processed, summary.acked), (20, 20), "{summary:?}");
    assert_eq!(summary.errors, 0, "{summary:?}");
    for s in ["s1", "s2"] {
        assert!(
            pending_all(&ctx.backend(), &ctx.key(s), "g")
                .await
                .is_empty()
        );
    }
}

/// Outcomes settle messages as asked: `Retry` with a delay comes back
/// after it, `DeadLetter` lands in the DLQ with its reason, and an error
/// retries with backoff and dead-letters past the limit with the error as
/// the reason.
pub async fn outcomes_settle_as_asked(ctx: &TestContext) {
    let m = ctx.manager("w");
    m.create_consumer_group(&quick_retries(ctx, "g", &["s"], 1))
        .await
        .unwrap();
    for kind in ["later", "drop", "boom", "fine"] {
        m.send_message("s", json!({ "kind": kind }), None)
            .await
            .unwrap();
    }
    let calls = Arc::new(Mutex::new(HashMap::<String, Vec<u32>>::new()));
    let settled = Arc::new(Mutex::new(HashMap::<String, Vec<Settled>>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    // later: 2 calls; drop: 1; boom: 2 (one retry, then the DLQ); fine: 1.
    stop_after(&done, 6, &stop);
    let summary = m
        .consume("g", {
            let (calls, done) = (Arc::clone(&calls), Arc::clone(&done));
            move |job: Job<Value>| {
                let (calls, done) = (Arc::clone(&calls), Arc::clone(&done));
                async move {
                    let kind = job.data["kind"].as_str().unwrap_or_default().to_owned();
                    calls
                        .lock()
                        .unwrap()
                        .entry(kind.clone())
                        .or_default()
                        .push(job.retry_count());
                    done.fetch_add(1, Ordering::SeqCst);
                    match kind.as_str() {
                        "later" if job.retry_count() == 0 => {
                            Ok(Outcome::retry_after(Duration::from_millis(100)))
                        }
                        "drop" => Ok(Outcome::dead_letter("not for us")),
                        "boom" => Err("tool call failed".to_owned()),
                        _ => Ok(Outcome::Ack),
                    }
                }
            }
        })
        .on_settled({
            let settled = Arc::clone(&settled);
            move |s| {
                let kind = s.message.data["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                settled.lock().unwrap().entry(kind).or_default().push(s.how);
            }
        })
        .options(quick())
        .shutdown_on(stop)
        .await
        .unwrap();
    let settled = settled.lock().unwrap().clone();
    assert_eq!(settled["later"], [Settled::Retried, Settled::Acked]);
    assert_eq!(settled["drop"], [Settled::DeadLettered]);
    assert_eq!(settled["boom"], [Settled::Retried, Settled::DeadLettered]);
    assert_eq!(settled["fine"], [Settled::Acked]);
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls["later"], [0, 1]);
    assert_eq!(calls["drop"], [0]);
    assert_eq!(calls["boom"], [0, 1]);
    assert_eq!(calls["fine"], [0]);
    assert_eq!(
        (summary.acked, summary.retried, summary.dead_lettered),
        (2, 2, 2),
        "{summary:?}"
    );
    let dead = m.dead_letters(10).await.unwrap();
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|d| d.dead_letter.as_ref().unwrap().reason.clone())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["not for us", "retry limit reached: tool call failed"]
    );
}

#[derive(Debug, Deserialize)]
struct Task {
    task_id: String,
    priority: u8,
}

/// Payloads are decoded into the handler's type; one that does not fit
/// never reaches the handler, goes to the DLQ with the decoding error, and
/// is not retried.
pub async fn typed_payloads_that_do_not_fit_are_dead_lettered(ctx: &TestContext) {
    let m = ctx.manager("w");
    ctx.create_group(&m, "g", &["s"]).await;
    m.send_message("s", json!({"task_id": "R1", "priority": 3}), None)
        .await
        .unwrap();
    m.send_message("s", json!({"task_id": "R2", "priority": "high"}), None)
        .await
        .unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    // Stops once R1 is handled and R2 dead-lettered.
    let (watched, watcher, stopper) = (Arc::clone(&done), m.clone(), stop.clone());
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline
            && (watched.load(Ordering::SeqCst) < 1
                || watcher.dead_letters(10).await.map_or(0, |d| d.len()) < 1)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stopper.cancel();
    });
    let summary = m
        .consume("g", {
            let (got, done) = (Arc::clone(&got), Arc::clone(&done));
            move |job: Job<Task>| {
                let (got, done) = (Arc::clone(&got), Arc::clone(&done));
                async move {
                    got.lock()
                        .unwrap()
                        .push((job.data.task_id, job.data.priority));
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                }
            }
        })
        .options(quick())
        .shutdown_on(stop)
        .await
        .unwrap();
    assert_eq!(*got.lock().unwrap(), [("R1".to_owned(), 3)]);
    let dead = m.dead_letters(10).await.unwrap();
    let provenance = dead[0].dead_letter.as_ref().unwrap();
    assert!(
        provenance
            .reason
            .starts_with("payload does not fit the handler's type"),
        "{provenance:?}"
    );
    assert_eq!(dead[0].data["task_id"], "R2");
    assert_eq!(dead[0].retry_count, 0, "never retried");
    assert_eq!(summary.retried, 0);
    assert!(
        pending_all(&ctx.backend(), &ctx.key("s"), "g")
            .await
            .is_empty()
    );
}

/// However many messages wait, no more handlers run at once than the
/// limit, and the limit is reached.
pub async fn concurrency_never_exceeds_the_limit(ctx: &TestContext) {
    let m = ctx.manager("w");
    ctx.create_group(&m, "g", &["s"]).await;
    send_n(&m, "s", 24).await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    stop_after(&done, 24, &stop);
    let summary = m
        .consume("g", {
            let (running, most, done) =
                (Arc::clone(&running), Arc::clone(&most), Arc::clone(&done));
            move |_job: Job<Value>| {
                let (running, most, done) =
                    (Arc::clone(&running), Arc::clone(&most), Arc::clone(&done));
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                }
            }
        })
        .options(quick().concurrency(4))
        .shutdown_on(stop)
        .await
        .unwrap();
    assert_eq!(summary.acked, 24);
    assert_eq!(
        most.load(Ordering::SeqCst),
        4,
        "the limit is used and never passed"
    );
}

/// A handler that works longer than `claim_idle` keeps its message: the
/// runner renews its lease, so another consumer's claims find nothing;
/// when the worker's process dies, the message is claimed once
/// `claim_idle` has passed.
pub async fn long_handlers_keep_their_lease_until_their_process_dies(ctx: &TestContext) {
    let idle = Duration::from_millis(300);
    let admin = ctx.manager("admin");
    admin
        .create_consumer_group(&ctx.group("g", &["s"]).with_claim_idle(idle))
        .await
        .unwrap();
    let sent = send_n(&admin, "s", 1).await;
    let worker = ctx.second_manager("worker").await;
    let started = Arc::new(tokio::sync::Notify::new());
    // The worker runs on a runtime of its own, which is shut down to stand
    // for the death of its process.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let signal = Arc::clone(&started);
    runtime.spawn(async move {
        let _ = worker
            .consume("g", move |_job: Job<Value>| {
                let signal = Arc::clone(&signal);
                async move {
                    signal.notify_one();
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<(), String>(())
                }
            })
            .options(quick())
            .await;
    });
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the handler starts");
    let thief = ctx.second_manager("thief").await;
    let alive_until = Instant::now() + idle * 4;
    while Instant::now() < alive_until {
        let got = thief.claim_pending_messages("g", Some(idle)).await.unwrap();
        assert!(
            got.is_empty(),
            "a live handler's message was claimed: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runtime.shutdown_background();
    let died = Instant::now();
    let mut claimed = Vec::new();
    while claimed.is_empty() && died.elapsed() < Duration::from_secs(10) {
        claimed = thief.claim_pending_messages("g", Some(idle)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ids(&claimed), sent, "claimed once the worker is dead");
    assert!(died.elapsed() >= idle - Duration::from_millis(60));
    assert!(thief.acknowledge(&claimed[0], "g").await.unwrap());
}

/// A runner whose future is dropped (its task aborted, a `select!` that
/// took another branch) stops renewing leases with it: the message its
/// handler had is claimed by another consumer once `claim_idle` has passed,
/// in a process that lives on.
pub async fn a_dropped_runner_lets_go_of_its_messages(ctx: &TestContext) {
    let idle = Duration::from_millis(300);
    let admin = ctx.manager("admin");
    admin
        .create_consumer_group(&ctx.group("g", &["s"]).with_claim_idle(idle))
        .await
        .unwrap();
    let sent = send_n(&admin, "s", 1).await;
    let worker = ctx.second_manager("worker").await;
    let started = Arc::new(tokio::sync::Notify::new());
    let signal = Arc::clone(&started);
    let running = tokio::spawn(async move {
        let _ = worker
            .consume("g", move |_job: Job<Value>| {
                let signal = Arc::clone(&signal);
                async move {
                    signal.notify_one();
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<(), String>(())
                }
            })
            .options(quick())
            .await;
    });
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the handler starts");
    running.abort();
    let _ = running.await;
    let dropped = Instant::now();
    let thief = ctx.second_manager("thief").await;
    let mut claimed = Vec::new();
    while claimed.is_empty() && dropped.elapsed() < Duration::from_secs(10) {
        claimed = thief.claim_pending_messages("g", Some(idle)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ids(&claimed), sent, "claimed once the runner is gone");
    assert!(thief.acknowledge(&claimed[0], "g").await.unwrap());
}

/// Shutdown loses nothing: running handlers finish, their acks are sent,
/// nothing fetched stays pending, and a second run handles the rest; every
/// message is handled exactly once over the two runs.
pub async fn shutdown_loses_nothing(ctx: &TestContext) {
    let m = ctx.manager("w");
    ctx.create_group(&m, "g", &["s"]).await;
    let sent = send_n(&m, "s", 40).await;
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let handler = {
        let seen = Arc::clone(&seen);
        move |job: Job<Value>| {
            let seen = Arc::clone(&seen);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                seen.lock().unwrap().push(job.id().to_owned());
                Ok::<(), String>(())
            }
        }
    };
    let stop = CancellationToken::new();
    let early = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        early.cancel();
    });
    let first = m
        .consume("g", handler.clone())
        .options(quick().concurrency(4))
        .shutdown_on(stop)
        .await
        .unwrap();
    assert!(first.overran.is_empty());
    assert_eq!(first.acked, first.processed);
    // Nothing fetched waits for a claim: whatever is still pending was
    // handed back, claimable at once.
    let pending = pending_all(&ctx.backend(), &ctx.key("s"), "g").await;
    assert_eq!(pending.len() as u64, first.handed_back, "{pending:?}");
    assert!(pending.iter().all(|p| p.idle >= Duration::from_secs(3600)));
    let handled = seen.lock().unwrap().len();
    assert!(handled > 0 && handled < 40, "stopped midway: {handled}");

    let stop = CancellationToken::new();
    let done = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let watcher = stop.clone();
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        while counter.lock().unwrap().len() < 40 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        done.store(1, Ordering::SeqCst);
        watcher.cancel();
    });
    let second = m
        .consume("g", handler)
        .options(quick().concurrency(4))
        .shutdown_on(stop)
        .await
        .unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let mut sent = sent;
    sent.sort();
    assert_eq!(seen, sent, "every message exactly once");
    assert_eq!(first.acked + second.acked, 40);
}

/// A handler still running when the grace period ends is stopped; its
/// message stays pending for this consumer and the summary names it.
pub async fn handlers_overrunning_the_grace_period_are_reported(ctx: &TestContext) {
    let m = ctx.manager("w");
    ctx.create_group(&m, "g", &["s"]).await;
    let sent = send_n(&m, "s", 1).await;
    let started = Arc::new(tokio::sync::Notify::new());
    let stop = CancellationToken::new();
    let (signal, stopper) = (Arc::clone(&started), stop.clone());
    tokio::spawn(async move {
        signal.notified().await;
        stopper.cancel();
    });
    let summary: ConsumeSummary = m
        .consume("g", move |_job: Job<Value>| {
            let started = Arc::clone(&started);
            async move {
                started.notify_one();
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<(), String>(())
            }
        })
        .options(quick().grace(Duration::from_millis(200)))
        .shutdown_on(stop)
        .await
        .unwrap();
    assert_eq!(summary.overran, [format!("s/{}", sent[0])]);
    assert_eq!(summary.processed, 0);
    let pending = pending_all(&ctx.backend(), &ctx.key("s"), "g").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].consumer, "w");
}

/// A handler that runs past the hard timeout is stopped and its message
/// retried with the timeout as the error; a panicking handler's message is
/// retried too.
pub async fn timeouts_and_panics_are_failures(ctx: &TestContext) {
    let m = ctx.manager("w");
    m.create_consumer_group(&quick_retries(ctx, "g", &["s"], 3))
        .await
        .unwrap();
    m.send_message("s", json!({"kind": "slow"}), None)
        .await
        .unwrap();
    m.send_message("s", json!({"kind": "panic"}), None)
        .await
        .unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    stop_after(&done, 2, &stop);
    let summary = m
        .consume("g", {
            let (errors, done) = (Arc::clone(&errors), Arc::clone(&done));
            move |job: Job<Value>| {
                let (errors, done) = (Arc::clone(&errors), Arc::clone(&done));
                async move {
                    if job.retry_count() > 0 {
                        errors
                            .lock()
                            .unwrap()
                            .push(job.message.error.clone().unwrap_or_default());
                        done.fetch_add(1, Ordering::SeqCst);
                        return Ok::<(), String>(());
                    }
                    if job.data["kind"] == "slow" {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    } else {
                        panic!("the tool crashed");
                    }
                    Ok(())
                }
            }
        })
        .options(
            quick()
                .hard_timeout(Some(Duration::from_millis(100)))
                .concurrency(2),
        )
        .shutdown_on(stop)
        .await
        .unwrap();
    let mut errors = errors.lock().unwrap().clone();
    errors.sort();
    assert_eq!(errors.len(), 2);
    assert!(
        errors[0].starts_with("handler panicked: the tool crashed"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("handler timed out after 100ms"),
        "{errors:?}"
    );
    assert_eq!(summary.timed_out, 1);
    assert_eq!((summary.retried, summary.acked), (2, 2));
}

/// Each group's own retry policy applies: with a limit of 0 a failure goes
/// straight to the DLQ; another group on the same stream retries.
pub async fn runner_applies_each_groups_policy(ctx: &TestContext) {
    let m = ctx.manager_with(
        ctx.config("w")
            .with_dlq(DlqConfig::default().with_retry_backoff(Duration::from_millis(10))),
    );
    m.create_consumer_group(&quick_retries(ctx, "strict", &["s"], 0))
        .await
        .unwrap();
    m.create_consumer_group(&quick_retries(ctx, "patient", &["s"], 2))
        .await
        .unwrap();
    send_n(&m, "s", 1).await;
    let run = |group: &'static str, attempts: usize| {
        let m: TestManager = m.clone();
        async move {
            let calls = Arc::new(AtomicUsize::new(0));
            let stop = CancellationToken::new();
            stop_after(&calls, attempts, &stop);
            let summary = m
                .consume(group, {
                    let calls = Arc::clone(&calls);
                    move |_job: Job<Value>| {
                        let calls = Arc::clone(&calls);
                        async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            Err::<(), _>("always fails")
                        }
                    }
                })
                .options(quick())
                .shutdown_on(stop)
                .await
                .unwrap();
            (calls.load(Ordering::SeqCst), summary)
        }
    };
    let (strict_calls, strict) = run("strict", 1).await;
    assert_eq!(strict_calls, 1);
    assert_eq!((strict.retried, strict.dead_lettered), (0, 1), "{strict:?}");
    let (patient_calls, patient) = run("patient", 3).await;
    assert_eq!(patient_calls, 3);
    assert_eq!(
        (patient.retried, patient.dead_lettered),
        (2, 1),
        "{patient:?}"
    );
    assert_eq!(m.dead_letters(10).await.unwrap().len(), 2);
}

/// What the claim ticker took but had not started when shutdown came is
/// handed back at once, claimable by anyone, without counting a delivery.
pub async fn claimed_work_not_started_is_handed_back(ctx: &TestContext) {
    let idle = Duration::from_millis(100);
    let admin = ctx.manager("admin");
    admin
        .create_consumer_group(&ctx.group("g", &["s"]).with_claim_idle(idle))
        .await
        .unwrap();
    send_n(&admin, "s", 3).await;
    // A consumer took all three and died.
    let dead = ctx.second_manager("dead").await;
    assert_eq!(
        dead.read_messages("g", Some(3), Some(Duration::from_secs(1)))
            .await
            .unwrap()
            .len(),
        3
    );
    tokio::time::sleep(idle).await;
    let m = ctx.second_manager("w").await;
    let started = Arc::new(tokio::sync::Notify::new());
    let stop = CancellationToken::new();
    let (signal, stopper) = (Arc::clone(&started), stop.clone());
    let (backend, key) = (ctx.backend(), ctx.key("s"));
    tokio::spawn(async move {
        signal.notified().await;
        // Until the claim ticker has queued the next one (both are then
        // w's), while the first handler still runs.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let pending = pending_all(&backend, &key, "g").await;
            if pending.iter().filter(|p| p.consumer == "w").count() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stopper.cancel();
    });
    let summary = m
        .consume("g", move |_job: Job<Value>| {
            let started = Arc::clone(&started);
            async move {
                started.notify_one();
                tokio::time::sleep(Duration::from_millis(2000)).await;
                Ok::<(), String>(())
            }
        })
        .options(
            quick()
                .claim_interval(Some(Duration::from_millis(50)))
                .grace(Duration::from_secs(5)),
        )
        .shutdown_on(stop)
        .await
        .unwrap();
    assert_eq!(summary.acked, 1, "{summary:?}");
    assert_eq!(summary.handed_back, 1, "{summary:?}");
    assert_eq!(summary.claimed, 2, "{summary:?}");
    let pending = pending_all(&ctx.backend(), &ctx.key("s"), "g").await;
    assert_eq!(pending.len(), 2);
    let handed_back = pending.iter().find(|p| p.consumer == "w").unwrap();
    assert!(
        handed_back.idle >= Duration::from_secs(3600),
        "claimable at once"
    );
    assert_eq!(
        handed_back.deliveries, 1,
        "the hand-back gave its delivery back"
    );
}
