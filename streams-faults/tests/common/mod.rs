//! What every scenario shares: a private Redis, agent processes, a history
//! directory, and the wait for a group to drain before the check.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use streams_conformance::checker::{Checker, Event, Final, Recorder, Report};
use streams_core::runner::{CancellationToken, ConsumeOptions, ConsumeSummary, Job, Outcome};
use streams_core::{
    ConsumerGroupConfig, DlqConfig, DlqPage, DlqQuery, Manager, ManagerConfig, RetryPolicy,
    StreamManager, StreamManagerExt, StreamMessage,
};
use streams_redis::testing::RedisServer;
use streams_redis::{RedisBackend, RedisConfig};

/// Scenarios run one at a time: each starts several processes, and on two
/// cores they would slow each other past their leases.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One scenario: its server, its processes, its history.
pub struct Scenario {
    pub name: String,
    pub server: RedisServer,
    pub namespace: String,
    pub history: PathBuf,
    pub recorder: Recorder,
    agents: Vec<Agent>,
}

/// A running producer or consumer process.
pub struct Agent {
    pub name: String,
    child: Child,
}

impl Agent {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `SIGKILL`, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} {}", self.pid());
    }

    /// Whether it has exited; panics if it exited with an error.
    pub fn finished(&mut self) -> bool {
        match self.child.try_wait().unwrap() {
            None => false,
            Some(status) => {
                assert!(status.success(), "{} exited with {status}", self.name);
                true
            }
        }
    }

    /// Whether it has exited, however it ended.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it to exit; panics past `limit` or on a failure.
    pub fn wait(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.finished() {
            assert!(
                Instant::now() < deadline,
                "{} did not finish in {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `SIGTERM`, then waits for the runner's drain.
    pub fn stop(&mut self) {
        if !self.exited() {
            self.signal("TERM");
            self.wait(Duration::from_secs(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options of a consumer process.
#[derive(Clone, Debug)]
pub struct ConsumerOpts {
    pub concurrency: usize,
    pub claim_idle_ms: u64,
    pub retry_limit: u32,
    pub timeout_ms: u64,
    pub hard_timeout_ms: u64,
}

impl Default for ConsumerOpts {
    fn default() -> Self {
        Self {
            concurrency: 8,
            claim_idle_ms: 1000,
            retry_limit: 3,
            timeout_ms: 1000,
            hard_timeout_ms: 0,
        }
    }
}

/// Options of a producer process.
#[derive(Clone, Debug, Default)]
pub struct ProducerOpts {
    pub start: u64,
    pub rate: u64,
    pub work_ms: u64,
    pub fail_pct: f64,
    pub poison_every: u64,
    pub crash: Option<u64>,
    pub fail_first: bool,
}

pub const STREAM: &str = "tasks";
pub const GROUP: &str = "workers";

impl Scenario {
    /// A scenario on a new private server started with `args`.
    pub fn new(name: &str, args: &[&str]) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let server = RedisServer::start_with_args(args).expect(
            "redis-server must be on PATH for the fault scenarios (apt-get install redis-server)",
        );
        let history = std::env::temp_dir().join(format!(
            "xnai-faults-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&history);
        let recorder = Recorder::create(&history, "scenario").unwrap();
        Self {
            name: name.to_owned(),
            server,
            namespace: format!("xt-faults-{name}"),
            history,
            recorder,
            agents: Vec::new(),
        }
    }

    fn agent(&self, name: &str, url: &str, timeout_ms: u64, args: &[String]) -> Agent {
        let child = Command::new(env!("CARGO_BIN_EXE_xnai-fault-agent"))
            .arg("--url")
            .arg(url)
            .arg("--namespace")
            .arg(&self.namespace)
            .arg("--history")
            .arg(&self.history)
            .arg("--timeout-ms")
            .arg(timeout_ms.to_string())
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Agent {
            name: name.to_owned(),
            child,
        }
    }

    /// Starts a consumer process of [`GROUP`] on [`STREAM`].
    pub fn consumer(&self, name: &str, o: &ConsumerOpts) -> Agent {
        self.consumer_via(name, &self.server.url(), o)
    }

    /// Starts a consumer process that reaches the server through `url`
    /// (a proxy's, say).
    pub fn consumer_via(&self, name: &str, url: &str, o: &ConsumerOpts) -> Agent {
        let args: Vec<String> = [
            "consume",
            "--group",
            GROUP,
            "--stream",
            STREAM,
            "--consumer",
            name,
            "--concurrency",
            &o.concurrency.to_string(),
            "--claim-idle-ms",
            &o.claim_idle_ms.to_string(),
            "--retry-limit",
            &o.retry_limit.to_string(),
            "--hard-timeout-ms",
            &o.hard_timeout_ms.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        self.agent(name, url, o.timeout_ms, &args)
    }

    /// Starts a producer process sending `count` messages to [`STREAM`].
    pub fn producer(&self, name: &str, count: u64, o: &ProducerOpts) -> Agent {
        let mut args: Vec<String> = [
            "produce",
            "--name",
            name,
            "--stream",
            STREAM,
            "--count",
            &count.to_string(),
            "--start",
            &o.start.to_string(),
            "--rate",
            &o.rate.to_string(),
            "--work-ms",
            &o.work_ms.to_string(),
            "--fail-pct",
            &o.fail_pct.to_string(),
            "--poison-every",
            &o.poison_every.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if let Some(n) = o.crash {
            args.push("--crash".into());
            args.push(n.to_string());
        }
        if o.fail_first {
            args.push("--fail-first".into());
        }
        self.agent(name, &self.server.url(), 1000, &args)
    }

    /// A manager of the scenario's namespace, for the test's own reads.
    pub async fn manager(&self, consumer: &str) -> Manager<RedisBackend> {
        let config = RedisConfig::new(self.server.url())
            .with_response_timeout(Duration::from_secs(2))
            .with_connect_timeout(Duration::from_secs(2));
        let backend = RedisBackend::from_config(config).await.unwrap();
        Manager::new(
            backend,
            ManagerConfig::default()
                .with_namespace(self.namespace.clone())
                .with_consumer_id(consumer),
        )
        .unwrap()
    }

    /// A manager of the scenario's namespace on `config` (another URL,
    /// shorter timeouts), with short retry backoffs, as the agents use.
    pub async fn manager_on(&self, config: RedisConfig, consumer: &str) -> Manager<RedisBackend> {
        let backend = RedisBackend::from_config(config).await.unwrap();
        Manager::new(backend, self.manager_config(consumer)).unwrap()
    }

    /// The configuration of [`manager_on`](Self::manager_on)'s managers.
    pub fn manager_config(&self, consumer: &str) -> ManagerConfig {
        ManagerConfig::default()
            .with_namespace(self.namespace.clone())
            .with_consumer_id(consumer)
            .with_promote_interval(Duration::from_millis(100))
            .with_dlq(
                DlqConfig::default()
                    .with_retry_limit(3)
                    .with_retry_backoff(Duration::from_millis(20)),
            )
    }

    /// Creates [`GROUP`] on [`STREAM`] with the agents' settings and
    /// `claim_idle`.
    pub async fn create_group<M: StreamManager + ?Sized>(&self, m: &M, claim_idle: Duration) {
        m.create_consumer_group(&group_config(claim_idle))
            .await
            .unwrap();
    }

    /// Runs the consume runner over [`GROUP`] in this process, recording
    /// every start and settlement as an agent does. A payload with
    /// `"fail_first": true` asks for a retry on its first attempt, one with
    /// `"dead": true` is dead-lettered; the others are acknowledged.
    pub fn runner<M>(&self, name: &str, m: M, options: ConsumeOptions) -> Runner
    where
        M: StreamManager + Clone + 'static,
    {
        let history = Arc::new(Recorder::create(&self.history, &format!("runner-{name}")).unwrap());
        let starts = Arc::clone(&history);
        let settles = Arc::clone(&history);
        let me = name.to_owned();
        let stop = CancellationToken::new();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&delivered);
        let run = m
            .consume(GROUP, move |job: Job<Value>| {
                let history = Arc::clone(&starts);
                let log = Arc::clone(&log);
                let me = me.clone();
                async move {
                    let key = job.data["key"].as_str().unwrap_or_default().to_owned();
                    history.started(&key, job.stream(), job.id(), &me, job.deliveries());
                    log.lock().unwrap().push(Delivered::of(&job.message));
                    let (outcome, asked) = if job.data["dead"].as_bool() == Some(true) {
                        (Outcome::dead_letter("asked to"), "dead_letter")
                    } else if job.data["fail_first"].as_bool() == Some(true)
                        && job.retry_count() == 0
                    {
                        (Outcome::retry(), "retry")
                    } else {
                        (Outcome::Ack, "ack")
                    };
                    history.finished(&key, job.stream(), job.id(), &me, asked);
                    Ok::<_, String>(outcome)
                }
            })
            .on_settled(move |s| {
                let key = s
                    .message
                    .data
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let consumer = s.message.delivery.as_ref().map_or("", |d| &*d.consumer);
                settles.settled(key, &s.message.stream, &s.message.id, consumer, s.how);
            })
            .options(options)
            .shutdown_on(stop.clone());
        Runner {
            stop,
            handle: tokio::spawn(run.into_future()),
            delivered,
        }
    }

    /// A plain connection to the server.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    pub fn checker(&self) -> Checker {
        Checker::load(&self.history).unwrap()
    }

    /// Keys whose send returned an id (at or after `since` µs).
    pub fn sent_keys(&self, since: u64) -> Vec<String> {
        self.checker()
            .events()
            .iter()
            .filter_map(|e| match e {
                Event::Sent { t, key, .. } if *t >= since => Some(key.clone()),
                _ => None,
            })
            .collect()
    }

    /// Waits until every key sent (at or after `since`) has been acked or
    /// dead-lettered according to the history or is in the dead-letter
    /// queue (a move whose reply was lost), and the group holds nothing
    /// pending or scheduled; returns the final state (after `limit`, the
    /// state as it is, for the checker to report).
    pub async fn drain(&self, since: u64, limit: Duration) -> Final {
        let m = self.manager("checker").await;
        let deadline = Instant::now() + limit;
        let mut told = Instant::now();
        loop {
            let end = self.final_state(&m).await;
            if told.elapsed() > Duration::from_secs(10) {
                told = Instant::now();
                eprintln!(
                    "{}: still draining: {:?}",
                    self.name,
                    end.as_ref().map(|e| (e.pending, e.dead_lettered.len())),
                );
            }
            if let Some(end) = end {
                if end.pending == 0 && self.all_settled(since, &end.dead_lettered) {
                    return end.sent_after(since);
                }
                if Instant::now() > deadline {
                    return end.sent_after(since);
                }
            } else {
                assert!(
                    Instant::now() < deadline,
                    "the server did not answer while draining"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Whether every key sent (at or after `since`) was acked according to
    /// the history, or is among the `dead` keys (dead letters are counted
    /// from the queue: a poison message is dead-lettered by a read, before
    /// any handler).
    pub fn all_settled(&self, since: u64, dead: &[String]) -> bool {
        let end = Final::new()
            .dead_lettered(dead.iter().cloned())
            .sent_after(since);
        self.checker().check(&end).lost == 0
    }

    /// The dead-lettered keys and what the group still holds (pending,
    /// scheduled and ready retries), or `None` if the server does not answer.
    pub async fn final_state(&self, m: &Manager<RedisBackend>) -> Option<Final> {
        let health = m.group_health(GROUP).await.ok()?;
        let held: u64 = health
            .streams
            .iter()
            .map(|s| s.pending + s.scheduled_retries + s.ready_retries)
            .sum();
        let mut dead = Vec::new();
        let mut query = DlqQuery::new().with_limit(1000);
        loop {
            let page: DlqPage = m.dlq_list(&query).await.ok()?;
            for entry in &page.entries {
                dead.push(
                    entry
                        .data
                        .get("key")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            match page.next {
                Some(cursor) => query = query.after(cursor),
                None => break,
            }
        }
        Some(Final::new().dead_lettered(dead).pending(held))
    }

    /// Checks the history against the final state, prints the report and
    /// its table row, and appends the row to `$XNAI_FAULTS_REPORT` if set.
    pub fn report(&self, end: &Final) -> Report {
        let report = self.checker().check(end);
        let row = report.table_row(&self.name);
        eprintln!("{}: {report}\n{row}", self.name);
        if let Ok(path) = std::env::var("XNAI_FAULTS_REPORT") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{row}");
            }
        }
        report
    }

    pub fn history_dir(&self) -> &Path {
        &self.history
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.agents.clear();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.history);
        } else {
            eprintln!("history kept in {}", self.history.display());
        }
    }
}

/// The group's configuration: `claim_idle`, short blocks and backoffs.
pub fn group_config(claim_idle: Duration) -> ConsumerGroupConfig {
    ConsumerGroupConfig::new(GROUP, [STREAM])
        .with_claim_idle(claim_idle)
        .with_block(Duration::from_millis(200))
        .with_retry(RetryPolicy::new(
            3,
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
}

/// The runner options the agents use, for a group's `claim_idle`.
pub fn runner_options(claim_idle: Duration) -> ConsumeOptions {
    ConsumeOptions::default()
        .concurrency(8)
        .poll(Duration::from_millis(200))
        .claim_interval(Some(claim_idle / 2))
        .promote_interval(Duration::from_millis(100))
        .grace(Duration::from_secs(5))
}

/// A consume runner in the test's process.
pub struct Runner {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<streams_core::Result<ConsumeSummary>>,
    /// Every message handed to its handler.
    pub delivered: Arc<Mutex<Vec<Delivered>>>,
}

/// A message as it was handed to a handler.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub id: String,
    pub key: String,
    /// Read from the group's retry stream (its id is that stream's).
    pub from_retry: bool,
}

impl Delivered {
    pub fn of(m: &StreamMessage) -> Self {
        Self {
            id: m.id.clone(),
            key: m
                .data
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            from_retry: m.delivery.as_ref().is_some_and(|d| d.from_retry),
        }
    }
}

impl Runner {
    /// Shuts it down (drains, flushes) and returns its summary.
    pub async fn stop(self) -> ConsumeSummary {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("the runner did not stop within 30 s")
            .unwrap()
            .unwrap()
    }
}

/// Waits until `f` holds, polling; panics past `limit`.
pub async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many `Started` events the history holds for `consumer`.
pub fn starts_by(checker: &Checker, consumer: &str) -> usize {
    checker
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Started { consumer: c, .. } if c == consumer))
        .count()
}
