//! What the dashboard tests share: a namespace seeded with streams, a
//! group, dead letters and a stuck consumer; the dashboard started on a
//! free port over it (and stopped when dropped); and a small HTTP client.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use xnai_streams::ConsumerGroupConfig;

use super::Ns;

/// The group of the seeded namespace.
pub(crate) const GROUP: &str = "workers";
/// Its stream.
pub(crate) const STREAM: &str = "jobs";
/// A stream no group reads.
pub(crate) const EVENTS: &str = "events";
/// The consumer that holds entries and never settles them.
pub(crate) const STUCK: &str = "agent-stuck";
/// The consumer that settles what it reads.
pub(crate) const WORKER: &str = "agent-ok";
/// A payload that would run if it were put on the page as HTML.
pub(crate) const SCRIPT: &str =
    "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\">";
/// The group's claim threshold.
pub(crate) const CLAIM_IDLE: Duration = Duration::from_millis(400);

/// What the seeded namespace holds.
#[derive(Debug)]
pub(crate) struct Seeded {
    /// The dead letter of a plain task (reason `boom: bad input`).
    pub(crate) plain_dlq: String,
    /// The dead letter whose payload is [`SCRIPT`].
    pub(crate) script_dlq: String,
    /// The entries `agent-stuck` holds.
    pub(crate) stuck: Vec<String>,
    /// The entry acknowledged first.
    pub(crate) acked: String,
}

/// Seeds `ns`: `jobs` (7 entries) read by `workers`: two acknowledged, one
/// retried (scheduled, not yet due), two dead-lettered (one with a
/// `<script>` payload), two held by `agent-stuck` past the claim
/// threshold; and `events` (2 entries), read by no group.
pub(crate) fn seed(ns: &Ns) -> Seeded {
    let worker = ns.manager(WORKER);
    let stuck = ns.manager(STUCK);
    ns.run(async {
        let config = ConsumerGroupConfig::new(GROUP, [STREAM])
            .with_block(Duration::from_millis(100))
            .with_claim_idle(CLAIM_IDLE);
        worker.create_consumer_group(&config).await.unwrap();
        for n in 1..=3 {
            worker
                .send_message(STREAM, json!({ "task": n }), None)
                .await
                .unwrap();
        }
        worker
            .send_message(STREAM, json!({ "task": "poison" }), None)
            .await
            .unwrap();
        worker
            .send_message(STREAM, json!({ "task": "x", "note": SCRIPT }), None)
            .await
            .unwrap();
        let batch = worker.read_messages(GROUP, Some(5), None).await.unwrap();
        assert_eq!(batch.len(), 5);
        worker.acknowledge(&batch[0], GROUP).await.unwrap();
        worker.acknowledge(&batch[1], GROUP).await.unwrap();
        assert!(worker.retry_message(&batch[2]).await.unwrap());
        let plain_dlq = worker
            .send_to_dlq(&batch[3], "boom: bad input", Some(GROUP))
            .await
            .unwrap();
        let script_dlq = worker
            .send_to_dlq(&batch[4], "<b>markup</b> in the payload", Some(GROUP))
            .await
            .unwrap();
        for n in 4..=5 {
            worker
                .send_message(STREAM, json!({ "task": n }), None)
                .await
                .unwrap();
        }
        let held = stuck.read_messages(GROUP, Some(2), None).await.unwrap();
        assert_eq!(held.len(), 2);
        for n in 1..=2 {
            worker
                .send_message(EVENTS, json!({ "event": n }), None)
                .await
                .unwrap();
        }
        // Past the claim threshold: the stuck consumer's entries are claimable.
        tokio::time::sleep(CLAIM_IDLE + Duration::from_millis(100)).await;
        Seeded {
            plain_dlq,
            script_dlq,
            stuck: held.into_iter().map(|m| m.id).collect(),
            acked: batch[0].id.clone(),
        }
    })
}

/// A dashboard process over a namespace, killed when dropped.
pub(crate) struct Dashboard {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    /// The token it printed, when it made one up.
    pub(crate) printed_token: Option<String>,
}

impl Dashboard {
    /// Starts `xnai-streams dashboard` on a free port with `args`, and
    /// waits until it says where it listens.
    pub(crate) fn start(ns: &Ns, args: &[&str]) -> Self {
        let mut child = ns
            .process()
            .args(["dashboard", "--addr", "127.0.0.1:0", "--interval", "300ms"])
            .args(args)
            .env_remove("XNAI_DASHBOARD_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the dashboard");
        let stdout = child.stdout.take().expect("its stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // It prints where it listens, the token it made up if any, and
        // "Ctrl-C to stop" last.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut base, mut printed_token) = (None, None);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!("the dashboard did not start (base so far: {base:?})");
            };
            if let Some(rest) = line.strip_prefix("dashboard on ") {
                let url = rest.split_whitespace().next().unwrap_or_default();
                base = Some(url.trim_end_matches('/').to_owned());
            }
            if let Some(token) = line.strip_prefix("token: ") {
                printed_token = Some(token.trim().to_owned());
            }
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
        Self {
            child,
            base: base.expect("an address"),
            printed_token,
        }
    }

    /// The URL of `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer of the dashboard.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header's value.
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The error kind of a JSON error answer, checked to have a message.
    pub(crate) fn error_kind(&self) -> String {
        let v = self.json();
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "an error with a message: {v}"
        );
        v["error"]["kind"].as_str().unwrap_or_default().to_owned()
    }
}

/// One request: `method` `url` with extra `headers` and a body.
pub(crate) async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
        .expect("a request");
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("an answer within 30 s")
        .expect("an answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `GET url`.
pub(crate) async fn get(url: &str) -> Reply {
    request("GET", url, &[], None).await
}

/// `POST url` with a JSON body and, when given, the token.
pub(crate) async fn post(url: &str, token: Option<&str>, body: &Value) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    request("POST", url, &headers, Some(&body.to_string())).await
}

/// Polls `f` until it gives `Some`, for at most `within`.
pub(crate) async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
