//! A partitioned stream under a group whose consumers come and go: one
//! joins, one leaves cleanly, one joins late, one is stopped dead. Every
//! message is handled, nothing is lost, a message is handled twice only
//! if the consumer stopped dead had it in hand, and each key's messages
//! stay in the order they were sent on their partition. On the memory
//! backend and on Redis.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xnai_streams::runner::{CancellationToken, ConsumeOptions, Job, Settled};
use xnai_streams::{
    ConsumerGroupConfig, Manager, ManagerConfig, MemoryBackend, StreamBackend, StreamManagerExt,
    field,
};

const STREAM: &str = "orders";
const GROUP: &str = "workers";
const PARTITIONS: u32 = 6;
const KEYS: usize = 20;
const PER_KEY: usize = 75;
const TOTAL: usize = KEYS * PER_KEY;

/// What the consumers did, message by message.
#[derive(Default)]
struct Log {
    /// `(key, seq)` handled, by consumer, in the order handlers started.
    started: HashMap<String, Vec<(String, u64)>>,
    /// `(key, seq)` acknowledged, by consumer.
    acked: HashMap<String, HashSet<(String, u64)>>,
}

type Shared = Arc<Mutex<Log>>;

fn lock(log: &Shared) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key_seq(data: &serde_json::Map<String, Value>) -> (String, u64) {
    let key = data["key"].as_str().expect("key").to_owned();
    let seq = data["seq"].as_u64().expect("seq");
    (key, seq)
}

fn acked_total(log: &Shared) -> usize {
    let log = lock(log);
    log.acked.values().flatten().collect::<HashSet<_>>().len()
}

async fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A consumer running the group until `stop` is cancelled (or its task is
/// aborted).
fn start<B: StreamBackend + Clone>(
    backend: &B,
    config: &ManagerConfig,
    name: &str,
    log: &Shared,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let manager = Manager::new(backend.clone(), config.clone().with_consumer_id(name)).unwrap();
    let (started, settled) = (Arc::clone(log), Arc::clone(log));
    let (me, me_too) = (name.to_owned(), name.to_owned());
    let options = ConsumeOptions::default()
        .concurrency(4)
        .claim_interval(Some(Duration::from_millis(200)))
        .poll(Duration::from_millis(100))
        .grace(Duration::from_secs(5));
    tokio::spawn(async move {
        manager
            .consume(GROUP, move |job: Job<Value>| {
                let handled = key_seq(&job.message.data);
                lock(&started)
                    .started
                    .entry(me.clone())
                    .or_default()
                    .push(handled);
                async {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    Ok::<_, std::io::Error>(())
                }
            })
            .options(options)
            .on_settled(move |s| {
                if matches!(s.how, Settled::Acked | Settled::AckUnconfirmed) {
                    lock(&settled)
                        .acked
                        .entry(me_too.clone())
                        .or_default()
                        .insert(key_seq(&s.message.data));
                }
            })
            .shutdown_on(stop)
            .await
            .unwrap();
    })
}

/// The scenarios run one at a time: two sets of runners at once on two
/// cores would make each the other's load.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn consumers_come_and_go<B: StreamBackend + Clone>(backend: B, namespace: &str) {
    let _serial = SERIAL.lock().await;
    let config = ManagerConfig::default().with_namespace(namespace);
    let producer =
        Manager::new(backend.clone(), config.clone().with_consumer_id("producer")).unwrap();
    let orders = producer
        .declare_partitions(STREAM, PARTITIONS)
        .await
        .unwrap();
    producer
        .create_consumer_group(
            &ConsumerGroupConfig::new(GROUP, [STREAM])
                .with_block(Duration::from_millis(100))
                // Long enough that a loaded machine does not let a live
                // consumer's lease lapse (which would be a legitimate
                // second delivery, but not the one this test counts).
                .with_claim_idle(Duration::from_secs(2)),
        )
        .await
        .unwrap();

    let sending = {
        let producer = producer.clone();
        tokio::spawn(async move {
            for seq in 0..PER_KEY {
                for k in 0..KEYS {
                    let key = format!("customer-{k}");
                    producer
                        .send_keyed(STREAM, &key, json!({"key": key, "seq": seq}), None)
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };

    let log: Shared = Arc::default();
    let stop_a = CancellationToken::new();
    let a = start(&backend, &config, "a", &log, stop_a.clone());
    wait_for("a to handle 200", Duration::from_secs(30), || {
        acked_total(&log) >= 200
    })
    .await;
    let b = start(&backend, &config, "b", &log, CancellationToken::new());
    wait_for("a and b to handle 500", Duration::from_secs(30), || {
        acked_total(&log) >= 500
    })
    .await;
    // a leaves cleanly: what it read and did not start goes back.
    stop_a.cancel();
    a.await.unwrap();
    let stop_c = CancellationToken::new();
    let c = start(&backend, &config, "c", &log, stop_c.clone());
    wait_for("b and c to handle 900", Duration::from_secs(30), || {
        acked_total(&log) >= 900
    })
    .await;
    // b is stopped dead: what it held stays pending until c claims it.
    b.abort();
    let _ = b.await;
    sending.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_total(&log) < TOTAL && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if acked_total(&log) < TOTAL {
        let acked: HashSet<(String, u64)> = lock(&log).acked.values().flatten().cloned().collect();
        let started: HashSet<(String, u64)> =
            lock(&log).started.values().flatten().cloned().collect();
        let missing: Vec<_> = (0..PER_KEY as u64)
            .flat_map(|seq| (0..KEYS).map(move |k| (format!("customer-{k}"), seq)))
            .filter(|m| !acked.contains(m))
            .collect();
        let pending = producer
            .list_pending(&xnai_streams::PendingFilter::new(GROUP))
            .await
            .unwrap();
        let health = producer.group_health(GROUP).await.unwrap();
        panic!(
            "{} of {TOTAL} acknowledged; missing {}: {:?}; started but not acked: {:?}; pending {pending:#?}; health {health:#?}",
            acked.len(),
            missing.len(),
            &missing[..missing.len().min(10)],
            missing
                .iter()
                .filter(|m| started.contains(*m))
                .take(10)
                .collect::<Vec<_>>(),
        );
    }
    stop_c.cancel();
    c.await.unwrap();

    // Nothing lost, nothing pending, nothing handled twice that b did not
    // have in hand when it stopped.
    // What b had in hand when it was stopped: what it started and never
    // acknowledged. Taken at the end, because a handler of b's that was
    // starting on the other worker thread as b was aborted records its
    // start a moment after.
    let in_hand: HashSet<(String, u64)> = {
        let log = lock(&log);
        let acked = log.acked.get("b").cloned().unwrap_or_default();
        log.started
            .get("b")
            .into_iter()
            .flatten()
            .filter(|m| !acked.contains(*m))
            .cloned()
            .collect()
    };
    {
        let log = lock(&log);
        let mut times: HashMap<(String, u64), usize> = HashMap::new();
        for handled in log.started.values().flatten() {
            *times.entry(handled.clone()).or_default() += 1;
        }
        assert_eq!(times.len(), TOTAL, "every message handled");
        let twice: Vec<_> = times
            .iter()
            .filter(|&(_, &n)| n > 1)
            .map(|(m, _)| m)
            .collect();
        for m in &twice {
            assert!(
                in_hand.contains(*m),
                "{m:?} handled twice, not in b's hands: started by {:?}, acked by {:?}",
                log.started
                    .iter()
                    .filter(|(_, v)| v.contains(*m))
                    .map(|(c, v)| (c, v.iter().filter(|x| x == m).count()))
                    .collect::<Vec<_>>(),
                log.acked
                    .iter()
                    .filter(|(_, v)| v.contains(*m))
                    .map(|(c, _)| c)
                    .collect::<Vec<_>>()
            );
        }
        eprintln!(
            "{TOTAL} messages over {PARTITIONS} partitions: handled by a {}, b {}, c {}; \
             {} handled twice (b had {} in hand)",
            log.started.get("a").map_or(0, Vec::len),
            log.started.get("b").map_or(0, Vec::len),
            log.started.get("c").map_or(0, Vec::len),
            twice.len(),
            in_hand.len()
        );
        assert!(log.started.get("c").is_some_and(|c| !c.is_empty()));
    }
    let health = producer.group_health(GROUP).await.unwrap();
    assert_eq!(health.streams.len(), PARTITIONS as usize, "{health:#?}");
    assert!(
        health
            .streams
            .iter()
            .all(|s| s.pending == 0 && s.group_exists),
        "{health:#?}"
    );

    // Each key stays on its partition, in the order sent.
    let mut per_key: HashMap<String, Vec<u64>> = HashMap::new();
    for p in 0..PARTITIONS {
        let key = producer.keys().stream(&orders.stream(p));
        let entries = backend
            .range(xnai_streams::backend::RangeQuery::new(&key, TOTAL))
            .await;
        for e in entries.unwrap() {
            let data: Value = serde_json::from_slice(
                &e.fields
                    .iter()
                    .find(|(f, _)| f.as_ref() == field::DATA.as_bytes())
                    .expect("data")
                    .1,
            )
            .unwrap();
            let (k, seq) = key_seq(data.as_object().unwrap());
            assert_eq!(orders.partition_for_key(&k), p);
            per_key.entry(k).or_default().push(seq);
        }
    }
    assert_eq!(per_key.len(), KEYS);
    for (k, seqs) in &per_key {
        assert_eq!(*seqs, (0..PER_KEY as u64).collect::<Vec<_>>(), "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_partitions_lose_nothing_as_consumers_come_and_go() {
    consumers_come_and_go(MemoryBackend::new(), "xt-partitions-mem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_partitions_lose_nothing_as_consumers_come_and_go() {
    let backend = streams_redis::testing::backend().await.expect("connect");
    let namespace = format!("xt-partitions-{}", std::process::id());
    backend.delete_namespace(&namespace).await.unwrap();
    consumers_come_and_go(backend.clone(), &namespace).await;
    backend.delete_namespace(&namespace).await.unwrap();
}

/// A group created while its stream is partitioned from another process
/// ends up reading every partition, whichever finishes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_created_while_a_stream_grows_read_every_partition() {
    for round in 0..200 {
        let backend = MemoryBackend::new();
        let config = ManagerConfig::default().with_namespace(format!("xt-race-{round}"));
        let a = Manager::new(backend.clone(), config.clone().with_consumer_id("a")).unwrap();
        let b = Manager::new(backend.clone(), config.clone().with_consumer_id("b")).unwrap();
        // What any process finds in the registry (`b` itself follows it
        // within its refresh interval).
        let c = Manager::new(backend, config.with_consumer_id("c")).unwrap();
        let (grown, created) = tokio::join!(
            tokio::spawn(async move { a.declare_partitions(STREAM, 4).await }),
            tokio::spawn(async move {
                b.create_consumer_group(&ConsumerGroupConfig::new(GROUP, [STREAM]))
                    .await
            }),
        );
        let grown = grown.unwrap().unwrap();
        created.unwrap().unwrap();
        let streams = c.group_config(GROUP).await.unwrap().streams;
        assert_eq!(streams, grown.streams(), "round {round}");
    }
}
