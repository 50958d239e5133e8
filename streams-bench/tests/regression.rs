//! A fast check that batching and concurrency still pay off, for CI: small
//! runs, ratios only (no absolute times), each the best of up to three
//! attempts, so a busy machine does not fail it. A change that makes
//! `send_batch`, `read_messages(1000)` + `acknowledge_many`, concurrent
//! `send_message` calls or the memory backend no faster than one call per
//! message fails it.
//!
//! It runs against the tests' Redis (`REDIS_URL`, else 127.0.0.1:6379, else
//! a private `redis-server`), in `xt-bench-*` namespaces deleted after each
//! measurement.

use std::time::Duration;

use streams_bench::{Env, Result, Workload, rate, workload};

/// Messages per measurement.
const N: usize = 2000;
/// Attempts before a ratio is judged.
const ATTEMPTS: usize = 3;
/// How much faster the batched forms and the memory backend must be.
const FACTOR: f64 = 3.0;
/// How much faster 64 concurrent senders must be than one: about 7x to 11x
/// with their commands sharing round trips, in a debug build on a busy
/// 2-core machine (bound by the client's CPU, which CI shares), 2.5x to 7x
/// without.
const CONCURRENT_FACTOR: f64 = 3.0;

fn row(id: &str) -> Box<dyn Workload> {
    workload(id).unwrap_or_else(|| panic!("no row {id}"))
}

async fn produce(env: &Env, w: &dyn Workload) -> Result<f64> {
    Ok(rate(N, w.produce(env, N).await?))
}

async fn consume(env: &Env, w: &dyn Workload) -> Result<f64> {
    let target = w.prefill(env, N).await?;
    let took = w.consume(env, &target, N).await;
    env.cleanup(&target).await?;
    Ok(rate(N, took?))
}

/// One ratio: what it compares, its floor, and the best value seen.
struct Check {
    name: &'static str,
    floor: f64,
    best: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_and_concurrency_pay_off() {
    let env = Env::new(
        Some(streams_redis::testing::redis_url()),
        format!("xt-bench-{}", std::process::id()),
    );
    let (single, batched, tasks, memory) = (
        row("single"),
        row("batched"),
        row("64-tasks"),
        row("mem-single"),
    );
    let mut checks = [
        ("Redis: send_batch produce / send_message produce", FACTOR),
        (
            "Redis: read 1000 + acknowledge_many / read 1 + acknowledge",
            FACTOR,
        ),
        (
            "Redis: 64 tasks x send_message / one task",
            CONCURRENT_FACTOR,
        ),
        (
            "memory backend / Redis, one message per call, produce",
            FACTOR,
        ),
        (
            "memory backend / Redis, one message per call, consume+ack",
            FACTOR,
        ),
    ]
    .map(|(name, floor)| Check {
        name,
        floor,
        best: 0.0,
    });
    let run = async {
        for _ in 0..ATTEMPTS {
            let one_produce = produce(&env, single.as_ref()).await?;
            let one_consume = consume(&env, single.as_ref()).await?;
            let ratios = [
                produce(&env, batched.as_ref()).await? / one_produce,
                consume(&env, batched.as_ref()).await? / one_consume,
                produce(&env, tasks.as_ref()).await? / one_produce,
                produce(&env, memory.as_ref()).await? / one_produce,
                consume(&env, memory.as_ref()).await? / one_consume,
            ];
            for (check, ratio) in checks.iter_mut().zip(ratios) {
                check.best = check.best.max(ratio);
            }
            if checks.iter().all(|c| c.best >= c.floor) {
                break;
            }
        }
        Ok::<_, streams_bench::Error>(())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(300), run).await;
    // Whatever happened, leave nothing behind on the shared Redis.
    env.sweep().await.expect("deleting the check's keys");
    outcome
        .expect("the regression check took more than 5 minutes")
        .expect("a measurement failed");
    let report: Vec<String> = checks
        .iter()
        .map(|c| format!("{}: {:.1}x (at least {}x)", c.name, c.best, c.floor))
        .collect();
    eprintln!("{}", report.join("\n"));
    for c in &checks {
        assert!(
            c.best >= c.floor,
            "{} is only {:.2}x (at least {}x expected, best of {ATTEMPTS})\n{}",
            c.name,
            c.best,
            c.floor,
            report.join("\n")
        );
    }
}
