//! What every case gets: a [`TestContext`] over a fresh namespace, and the
//! runner that cleans up after it, pass or fail.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::json;
use streams_core::backend::{
    BackendLayer, Call, Feature, Layered, PendingEntry, PendingQuery, RangeQuery,
};
use streams_core::{
    ConsumerGroupConfig, DlqConfig, Entry, Fields, KeyLayout, Manager, ManagerConfig, RetryConfig,
    StreamBackend, StreamMessage,
};

/// The backend type every case runs against.
pub type DynBackend = Arc<dyn StreamBackend>;

/// What [`Meddle`] does to one primitive.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Counts the calls, and runs them.
    Count(Arc<std::sync::atomic::AtomicUsize>),
    /// Runs it after a pause.
    Delay(Duration),
    /// Fails it with the error made by the function, without running it.
    Fail(fn() -> streams_core::StreamError),
}

/// The operation name that makes [`Meddle`] apply its fault to every call.
pub const ANY: &str = "*";

/// A backend with one primitive (by its [`Call::operation`] name, or every
/// primitive with [`ANY`]) delayed, failed or counted; everything else
/// passes through.
#[derive(Debug)]
pub struct Meddle {
    inner: DynBackend,
    operation: &'static str,
    fault: Fault,
}

impl Meddle {
    /// `backend` with `fault` applied to `operation`, as a [`DynBackend`].
    pub fn wrap(backend: DynBackend, operation: &'static str, fault: Fault) -> DynBackend {
        Arc::new(Layered(Self {
            inner: backend,
            operation,
            fault,
        }))
    }
}

impl BackendLayer for Meddle {
    type Inner = dyn StreamBackend;

    fn inner(&self) -> &Self::Inner {
        &*self.inner
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        op: BoxFuture<'a, streams_core::Result<T>>,
    ) -> BoxFuture<'a, streams_core::Result<T>> {
        if self.operation != ANY && call.operation != self.operation {
            return op;
        }
        match &self.fault {
            Fault::Count(calls) => {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                op
            }
            &Fault::Delay(pause) => Box::pin(async move {
                tokio::time::sleep(pause).await;
                op.await
            }),
            &Fault::Fail(error) => Box::pin(async move { Err(error()) }),
        }
    }
}

/// The manager type every case uses.
pub type TestManager = Manager<DynBackend>;

/// Longest a single case may run before it counts as hung.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// A backend under test, as the suite sees it. One value serves one case.
#[async_trait]
pub trait TestBackend: Send + Sync + 'static {
    /// The configuration's name, for messages (`redis`, `redis-cluster`).
    fn name(&self) -> &'static str;

    /// What [`StreamBackend::name`] of its backends answers. Default:
    /// [`name`](Self::name).
    fn backend_name(&self) -> &'static str {
        self.name()
    }

    /// A connection to this case's data. Each call may open a new connection,
    /// but every connection sees the same streams (two managers on one backend).
    async fn connect(&self) -> DynBackend;

    /// Removes every key under `namespace`. Called after the case, pass or fail.
    async fn cleanup(&self, namespace: &str);

    /// The cases (`area::case`) this backend skips because it lacks a
    /// feature they need. Each must have a backend-specific test proving
    /// what replaces the behaviour. Default: none.
    fn expected_skips(&self) -> &'static [&'static str] {
        &[]
    }
}

/// What a case works with: a fresh namespace on the backend under test.
pub struct TestContext {
    /// The key prefix of this case; every manager made here uses it.
    pub namespace: String,
    backend: DynBackend,
    harness: Arc<dyn TestBackend>,
}

impl std::fmt::Debug for TestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestContext")
            .field("namespace", &self.namespace)
            .field("backend", &self.harness.name())
            .finish()
    }
}

impl TestContext {
    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.harness.backend_name()
    }

    /// The case's backend connection.
    pub fn backend(&self) -> DynBackend {
        Arc::clone(&self.backend)
    }

    /// Another connection to the same data.
    pub async fn second_backend(&self) -> DynBackend {
        self.harness.connect().await
    }

    /// The key layout of this case's namespace, with the default prefixes.
    pub fn keys(&self) -> KeyLayout {
        KeyLayout::new(
            Some(&self.namespace),
            &DlqConfig::default(),
            &RetryConfig::default(),
            "xnai:groups",
        )
        .expect("a valid test namespace")
    }

    /// The key of the stream `name` in this case's namespace.
    pub fn key(&self, name: &str) -> String {
        self.keys().stream(name)
    }

    /// The manager configuration of this case: its namespace, a consumer id,
    /// and a short backoff so retry cases finish quickly.
    pub fn config(&self, consumer: &str) -> ManagerConfig {
        ManagerConfig::default()
            .with_namespace(self.namespace.clone())
            .with_consumer_id(consumer)
            .with_dlq(DlqConfig::default().with_retry_backoff(Duration::from_millis(200)))
            .with_retry(RetryConfig::default().with_backoff_cap(Duration::from_secs(5)))
    }

    /// Whether the backend under test supports `feature`.
    pub fn supports(&self, feature: Feature) -> bool {
        self.backend.capabilities().supports(feature)
    }

    /// A manager for `consumer` on the case's connection.
    pub fn manager(&self, consumer: &str) -> TestManager {
        self.manager_with(self.config(consumer))
    }

    /// A manager with the given configuration on the case's connection.
    /// The namespace is forced to the case's.
    pub fn manager_with(&self, config: ManagerConfig) -> TestManager {
        let config = config.with_namespace(self.namespace.clone());
        Manager::new(self.backend(), config).expect("valid test configuration")
    }

    /// A manager for `consumer` on a second connection to the same data.
    pub async fn second_manager(&self, consumer: &str) -> TestManager {
        Manager::new(self.second_backend().await, self.config(consumer))
            .expect("valid test configuration")
    }

    /// Creates the group `name` over `streams` (with [`group`](Self::group)'s
    /// short block) through `manager`, failing the case if that fails.
    pub async fn create_group(&self, manager: &TestManager, name: &str, streams: &[&str]) {
        manager
            .create_consumer_group(&self.group(name, streams))
            .await
            .expect("create_consumer_group");
    }

    /// A group config with a short block, so empty reads return quickly.
    pub fn group(&self, name: &str, streams: &[&str]) -> ConsumerGroupConfig {
        ConsumerGroupConfig::new(name, streams.iter().copied())
            .with_block(Duration::from_millis(100))
    }
}

/// A unique namespace for one case: `xt-<pid>-<random>-<n>-<area>.<case>`
/// (a namespace is one key segment, so the case's `::` becomes `.`).
pub fn namespace_for(case: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    format!(
        "xt-{}-{}-{n}-{}",
        std::process::id(),
        h.finish() % 1_000_000,
        case.replace("::", ".")
    )
}

/// Runs one case against a backend: fresh namespace, overall timeout, and
/// cleanup whether the case passes, fails or hangs. A case that needs a
/// feature the backend lacks is skipped, and says so on stderr; the
/// suite's `capabilities::skipped_cases_are_declared` test counts the
/// skips, so none goes unnoticed.
pub async fn run_case<H, F, Fut>(name: &str, needs: &[Feature], harness: H, case: F)
where
    H: TestBackend,
    F: FnOnce(Arc<TestContext>) -> Fut,
    Fut: Future<Output = ()>,
{
    let harness: Arc<dyn TestBackend> = Arc::new(harness);
    let backend = harness.connect().await;
    let missing = backend.capabilities().missing(needs);
    if !missing.is_empty() {
        eprintln!("{}", skip_reason(name, harness.name(), &missing));
        return;
    }
    let namespace = namespace_for(name);
    let ctx = Arc::new(TestContext {
        namespace: namespace.clone(),
        backend,
        harness: Arc::clone(&harness),
    });
    let started = Instant::now();
    let outcome =
        tokio::time::timeout(CASE_TIMEOUT, AssertUnwindSafe(case(ctx)).catch_unwind()).await;
    harness.cleanup(&namespace).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!(
            "case `{name}` on {} hung: no result after {:?}",
            harness.name(),
            started.elapsed()
        ),
    }
}

/// A case as [`run_all`] takes it: the case function behind a boxed future.
pub type CaseFn = fn(Arc<TestContext>) -> std::pin::Pin<Box<dyn Future<Output = ()>>>;

/// One case of the suite for [`run_all`]: `area::case`, the features it
/// needs, and the case.
pub type SuiteCase = (&'static str, &'static [Feature], CaseFn);

/// Runs every case on one harness within one test, `concurrency` cases at
/// a time, each in its own namespace, cleaned up pass or fail: for a
/// backend whose server is expensive to start (a Redis Cluster), which the
/// harness starts once. Checks the skips as [`check_skips`] does, prints
/// each failure with its panic message, and panics at the end naming
/// every case that failed or hung.
pub async fn run_all(harness: Arc<dyn TestBackend>, cases: Vec<SuiteCase>, concurrency: usize) {
    let probe = harness.connect().await;
    let caps = probe.capabilities();
    let mut skipped: Vec<String> = Vec::new();
    let mut runnable = Vec::new();
    for (name, needs, case) in cases {
        let missing = caps.missing(needs);
        if missing.is_empty() {
            runnable.push((name, case));
        } else {
            eprintln!("{}", skip_reason(name, harness.name(), &missing));
            skipped.push(name.to_owned());
        }
    }
    let total = runnable.len();
    let started = Instant::now();
    let outcomes: Vec<(&str, std::result::Result<Duration, String>)> =
        futures::stream::iter(runnable)
            .map(|(name, case)| {
                let harness = Arc::clone(&harness);
                async move {
                    let namespace = namespace_for(name);
                    let ctx = Arc::new(TestContext {
                        namespace: namespace.clone(),
                        backend: harness.connect().await,
                        harness: Arc::clone(&harness),
                    });
                    let began = Instant::now();
                    let outcome = tokio::time::timeout(
                        CASE_TIMEOUT,
                        AssertUnwindSafe(case(ctx)).catch_unwind(),
                    )
                    .await;
                    harness.cleanup(&namespace).await;
                    let result = match outcome {
                        Ok(Ok(())) => Ok(began.elapsed()),
                        Ok(Err(panic)) => Err(panic_text(panic.as_ref())),
                        Err(_) => Err(format!("hung: no result after {:?}", began.elapsed())),
                    };
                    if let Err(why) = &result {
                        eprintln!(
                            "FAILED conformance case `{name}` on {}: {why}",
                            harness.name()
                        );
                    }
                    (name, result)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| *name)
        .collect();
    eprintln!(
        "conformance on {}: {} cases run in {:?}, {} failed, {} skipped",
        harness.name(),
        total,
        started.elapsed(),
        failed.len(),
        skipped.len()
    );
    assert!(
        failed.is_empty(),
        "{} conformance case(s) failed on {}: {}",
        failed.len(),
        harness.name(),
        failed.join(", ")
    );
    assert_declared_skips(harness.as_ref(), skipped);
}

/// Panics unless `skipped` are exactly the cases the harness declares in
/// [`TestBackend::expected_skips`].
fn assert_declared_skips(harness: &dyn TestBackend, mut skipped: Vec<String>) {
    let mut expected: Vec<String> = harness
        .expected_skips()
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    expected.sort();
    skipped.sort();
    assert_eq!(
        skipped,
        expected,
        "the cases skipped on {} are not the ones its harness declares",
        harness.name()
    );
}

/// The message of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Why a case does not run on a backend, as printed.
pub fn skip_reason(case: &str, backend: &str, missing: &[Feature]) -> String {
    let features: Vec<String> = missing.iter().map(ToString::to_string).collect();
    format!(
        "skipped conformance case `{case}` on {backend}: the backend has no {}",
        features.join(", ")
    )
}

/// Checks the suite's skips on a backend: every case whose features the
/// backend lacks, against the harness's [`TestBackend::expected_skips`].
/// Prints the count and the reasons; fails when they differ, so a backend
/// that loses a feature fails loudly instead of passing fewer cases.
pub async fn check_skips<H: TestBackend>(harness: H, cases: &[(&str, &[Feature])]) {
    let backend = harness.connect().await;
    let caps = backend.capabilities();
    let mut skipped = Vec::new();
    for (name, needs) in cases {
        let missing = caps.missing(needs);
        if !missing.is_empty() {
            eprintln!("{}", skip_reason(name, harness.name(), &missing));
            skipped.push((*name).to_owned());
        }
    }
    eprintln!(
        "conformance on {}: {} cases, {} run, {} skipped",
        harness.name(),
        cases.len(),
        cases.len() - skipped.len(),
        skipped.len()
    );
    assert_declared_skips(&harness, skipped);
}

/// Waits until `check` returns `Some`, polling every 10 ms, or panics after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not true within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads from `group` until `n` messages have arrived, or panics after `within`.
pub async fn read_n(
    manager: &TestManager,
    group: &str,
    n: usize,
    within: Duration,
) -> Vec<StreamMessage> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "read {} of {n} messages from `{group}` within {within:?}",
            out.len()
        );
        let batch = manager
            .read_messages(group, None, Some(Duration::from_millis(50)))
            .await
            .expect("read_messages");
        out.extend(batch);
    }
    out
}

impl TestContext {
    /// A manager with the given configuration on a second connection to the
    /// same data. The namespace is forced to the case's.
    pub async fn second_manager_with(&self, config: ManagerConfig) -> TestManager {
        let config = config.with_namespace(self.namespace.clone());
        Manager::new(self.second_backend().await, config).expect("valid test configuration")
    }
}

/// Asserts that a result is an error matching a [`StreamError`](streams_core::StreamError)
/// pattern, and shows what it was otherwise.
///
/// ```
/// use streams_conformance::assert_err;
/// use streams_core::StreamError;
///
/// let result: Result<(), StreamError> = Err(StreamError::GroupNotFound { group: "nope".into() });
/// assert_err!(result, StreamError::GroupNotFound { group } if group == "nope");
/// ```
#[macro_export]
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "expected Err({}), got {:?}",
                stringify!($pattern),
                other
            ),
        }
    };
}

/// Fields from `(name, value)` pairs.
pub fn fields(pairs: &[(&str, &[u8])]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                Bytes::copy_from_slice(k.as_bytes()),
                Bytes::copy_from_slice(v),
            )
        })
        .collect()
}

/// The value of the first field called `name`.
pub fn field<'f>(fields: &'f [(Bytes, Bytes)], name: &str) -> Option<&'f [u8]> {
    fields
        .iter()
        .find(|(k, _)| k.as_ref() == name.as_bytes())
        .map(|(_, v)| v.as_ref())
}

/// The value of the first field called `name`, as UTF-8 text.
pub fn field_str<'f>(fields: &'f [(Bytes, Bytes)], name: &str) -> Option<&'f str> {
    field(fields, name).map(|v| std::str::from_utf8(v).expect("UTF-8 field value"))
}

/// The ids of some messages, in order.
pub fn ids(messages: &[StreamMessage]) -> Vec<String> {
    messages.iter().map(|m| m.id.clone()).collect()
}

/// Every pending entry of `group` on `key`, in id order.
pub async fn pending_all(backend: &DynBackend, key: &str, group: &str) -> Vec<PendingEntry> {
    backend
        .pending(PendingQuery::new(key, group, 10_000))
        .await
        .expect("pending")
}

/// Every entry of a stream, in id order.
pub async fn entries(backend: &DynBackend, key: &str) -> Vec<Entry> {
    backend
        .range(RangeQuery::new(key, 100_000))
        .await
        .expect("range")
}

/// Runs `fut`, or panics if it takes longer than `limit`.
pub async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {limit:?}"),
    }
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Parses an RFC 3339 time, or panics.
pub fn rfc3339(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
}

/// The names of the groups on `key`, as the backend lists them.
pub async fn group_names(backend: &DynBackend, key: &str) -> Vec<String> {
    backend
        .groups(key)
        .await
        .expect("groups")
        .into_iter()
        .map(|g| g.name)
        .collect()
}

/// Sends `n` messages `{"n": i}` to `stream`; returns their ids.
pub async fn send_n(manager: &TestManager, stream: &str, n: usize) -> Vec<String> {
    let items = (0..n).map(|i| json!({ "n": i })).collect();
    let ids = manager
        .send_batch(stream, items, None)
        .await
        .expect("send_batch");
    assert_eq!(ids.len(), n);
    ids
}

/// Claims from `group` until a claim returns nothing; every claim returns at
/// most one redelivered message (one whose last delivery ended unsettled).
/// `idle` must outlast the loop, or the claimer claims back its own entries.
pub async fn claim_all(manager: &TestManager, group: &str, idle: Duration) -> Vec<StreamMessage> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let claimed = manager
            .claim_pending_messages(group, Some(idle))
            .await
            .expect("claim_pending_messages");
        if claimed.is_empty() {
            return out;
        }
        let redelivered = claimed
            .iter()
            .filter(|m| m.delivery.as_ref().is_some_and(|d| d.is_redelivery()))
            .count();
        assert!(
            redelivered <= 1,
            "{redelivered} redelivered messages in one claim"
        );
        out.extend(claimed);
    }
    panic!("claims of `{group}` never ran dry");
}

/// Reads once with a short block; the messages ready now.
pub async fn read_now(manager: &TestManager, group: &str) -> Vec<StreamMessage> {
    manager
        .read_messages(group, Some(1000), Some(Duration::from_millis(20)))
        .await
        .expect("read_messages")
}

/// Trims `key` to exactly its newest `len` entries, failing the case if that fails.
pub async fn trim_exact(backend: &DynBackend, key: &str, len: u64) -> u64 {
    backend
        .trim(
            key,
            streams_core::backend::Trim::MaxLen { len, approx: false },
        )
        .await
        .expect("trim")
}
