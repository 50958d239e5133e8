//! [`RedisConfig`]: where the server is and how long to wait for it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The URL used when none is given and `REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// How [`RedisBackend`](crate::RedisBackend) connects to Redis.
///
/// Durations serialize as milliseconds under `*_ms` names. Secrets are never
/// written out: `Debug` and serialization show the URL with its password
/// replaced by `***` (a configuration read from a file keeps the password it
/// was given, but writing it back out does not).
///
/// ```
/// use std::time::Duration;
/// use streams_redis::RedisConfig;
///
/// let config = RedisConfig::new("redis://:secret@redis.internal:6379/0")
///     .with_response_timeout(Duration::from_secs(10));
/// assert!(!format!("{config:?}").contains("secret"));
/// assert_eq!(config.block_margin, Duration::from_secs(1));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server: `redis://[user[:password]@]host[:port][/db]`, `rediss://`
    /// for TLS (feature `tls`), or `redis+unix:///path`. Default
    /// `redis://127.0.0.1:6379`; [`RedisConfig::from_env`] reads `REDIS_URL`.
    /// Serialized without its password.
    ///
    /// Several URLs separated by commas are the seed nodes of a Redis
    /// Cluster (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`): the backend
    /// then talks to the cluster, as with [`cluster`](Self::cluster). A
    /// comma in a password must therefore be written `%2C`.
    #[serde(serialize_with = "redacted")]
    pub url: String,

    /// Longest wait for a connection to be established. Default 5 s.
    /// Serialized as `connect_timeout_ms`.
    #[serde(rename = "connect_timeout_ms", with = "millis")]
    pub connect_timeout: Duration,

    /// Longest wait for the reply to an ordinary (non-blocking) command.
    /// Default 5 s. Serialized as `response_timeout_ms`.
    ///
    /// The redis crate's own default, 500 ms, is too short for scripts over
    /// large pending lists and big pipelines, and fails any `BLOCK` longer
    /// than itself.
    #[serde(rename = "response_timeout_ms", with = "millis")]
    pub response_timeout: Duration,

    /// Added to a read's `BLOCK` time to get the response timeout of the
    /// connection that carries it, so the server always answers a blocking
    /// read before the client gives up on it. Default 1 s. Serialized as
    /// `block_margin_ms`.
    #[serde(rename = "block_margin_ms", with = "millis")]
    pub block_margin: Duration,

    /// Most idle connections kept for blocking reads. Each concurrent
    /// blocking read holds its own connection; beyond this many, connections
    /// are closed when their read ends. Default 16.
    pub max_idle_blocking: usize,

    /// Only for a backend built on a caller's connection
    /// ([`RedisBackend::from_connection_manager`](crate::RedisBackend::from_connection_manager)):
    /// blocking reads share that connection, so they wait in slices of at
    /// most this long, and other commands queue behind one slice at most.
    /// Must be shorter than that connection's response timeout. Default 50 ms.
    /// Serialized as `shared_block_slice_ms`.
    #[serde(rename = "shared_block_slice_ms", with = "millis")]
    pub shared_block_slice: Duration,

    /// How often the command connection retries connecting, with exponential
    /// backoff from 100 ms, before a command fails with a connection error.
    /// The next command starts a new attempt. Default 3.
    pub reconnect_retries: usize,

    /// Whether connections set `TCP_NODELAY`, sending each write at once
    /// instead of letting Nagle's algorithm hold a small write back while
    /// an earlier one is unacknowledged. Default `true`.
    ///
    /// Concurrent commands leave in few large writes anyway (see
    /// `docs/architecture.md`, "Concurrent commands share round trips" and
    /// "`TCP_NODELAY` stays on"): measured with 64 concurrent senders on
    /// a local server, turning it off changed throughput by less than the
    /// noise, and it would delay the second of two back-to-back commands
    /// by a round trip on a real network.
    pub tcp_nodelay: bool,

    /// Talk to a Redis Cluster through the given seed node(s): commands go
    /// to the node that serves their keys' slot, and the client follows
    /// the cluster's topology as it changes (failover, resharding). Also
    /// implied by a [`url`](Self::url) listing several nodes. Default
    /// `false`. See `docs/scaling.md`, "Redis Cluster".
    pub cluster: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            block_margin: Duration::from_secs(1),
            max_idle_blocking: 16,
            shared_block_slice: Duration::from_millis(50),
            reconnect_retries: 3,
            tcp_nodelay: true,
            cluster: false,
        }
    }
}

impl RedisConfig {
    /// The defaults, for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The defaults, for the server named by the `REDIS_URL` environment
    /// variable, or `redis://127.0.0.1:6379` when it is unset or empty.
    pub fn from_env() -> Self {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.trim().is_empty() => Self::new(url.trim()),
            _ => Self::default(),
        }
    }

    /// Sets [`url`](Self::url).
    #[must_use]
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`response_timeout`](Self::response_timeout).
    #[must_use]
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets [`block_margin`](Self::block_margin).
    #[must_use]
    pub fn with_block_margin(mut self, margin: Duration) -> Self {
        self.block_margin = margin;
        self
    }

    /// Sets [`max_idle_blocking`](Self::max_idle_blocking).
    #[must_use]
    pub fn with_max_idle_blocking(mut self, max: usize) -> Self {
        self.max_idle_blocking = max;
        self
    }

    /// Sets [`shared_block_slice`](Self::shared_block_slice).
    #[must_use]
    pub fn with_shared_block_slice(mut self, slice: Duration) -> Self {
        self.shared_block_slice = slice;
        self
    }

    /// Sets [`reconnect_retries`](Self::reconnect_retries).
    #[must_use]
    pub fn with_reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }

    /// Sets [`tcp_nodelay`](Self::tcp_nodelay).
    #[must_use]
    pub fn with_tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.tcp_nodelay = nodelay;
        self
    }

    /// Sets [`cluster`](Self::cluster).
    ///
    /// ```
    /// use streams_redis::RedisConfig;
    ///
    /// let one_seed = RedisConfig::new("redis://10.0.0.1:7000").with_cluster(true);
    /// assert!(one_seed.is_cluster());
    /// let seeds = RedisConfig::new("redis://10.0.0.1:7000,redis://10.0.0.2:7000");
    /// assert!(seeds.is_cluster());
    /// assert_eq!(seeds.seeds().len(), 2);
    /// assert!(!RedisConfig::default().is_cluster());
    /// ```
    #[must_use]
    pub fn with_cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Whether the backend talks to a Redis Cluster: [`cluster`](Self::cluster)
    /// is set or [`url`](Self::url) lists several nodes.
    pub fn is_cluster(&self) -> bool {
        self.cluster || self.seeds().len() > 1
    }

    /// The URLs listed in [`url`](Self::url), trimmed, empty ones left out.
    pub fn seeds(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// The URL with its password replaced by `***`, for logs.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("block_margin", &self.block_margin)
            .field("max_idle_blocking", &self.max_idle_blocking)
            .field("shared_block_slice", &self.shared_block_slice)
            .field("reconnect_retries", &self.reconnect_retries)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// Hides the password in `scheme://user:password@host` and in a `pass=`
/// query parameter (the form used by `redis+unix://` URLs).
pub(crate) fn redact_url(url: &str) -> String {
    if url.contains(',') {
        return url.split(',').map(redact_url).collect::<Vec<_>>().join(",");
    }
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = out[auth_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| auth_start + i);
        if let Some(at) = out[auth_start..auth_end].rfind('@') {
            let userinfo = &out[auth_start..auth_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(auth_start + colon + 1..auth_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some(("pass" | "password", _)) => {
                    format!("{}=***", kv.split('=').next().unwrap_or_default())
                }
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{base}{}", query.join("&"));
    }
    out
}

/// Serializes a URL without its password.
fn redacted<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

/// Serde for a `Duration` as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        for (url, want) in [
            ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
            ("rediss://user:pw@host", "rediss://user:***@host"),
            ("redis://user@host:1", "redis://user@host:1"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis+unix:///tmp/r.sock?db=1&pass=hunter2",
                "redis+unix:///tmp/r.sock?db=1&pass=***",
            ),
            ("not a url", "not a url"),
            (
                "redis://:a@h1:7000,redis://:b@h2:7000",
                "redis://:***@h1:7000,redis://:***@h2:7000",
            ),
        ] {
            assert_eq!(redact_url(url), want);
        }
        let cfg = RedisConfig::new("redis://u:topsecret@h:1");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("topsecret"), "{dbg}");
        assert!(dbg.contains("u:***@h:1"), "{dbg}");
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(!json.contains("topsecret"), "{json}");
        assert!(json.contains("u:***@h:1"), "{json}");
        // Read from a file, the password is kept.
        let read: RedisConfig = serde_json::from_str(r#"{"url":"redis://:pw@h:1"}"#).unwrap();
        assert_eq!(read.url, "redis://:pw@h:1");
    }

    #[test]
    fn serde_uses_millis_and_defaults() {
        let cfg = RedisConfig::default().with_block_margin(Duration::from_millis(250));
        let v = serde_json::to_value(&cfg).unwrap();
        assert_eq!(v["block_margin_ms"], 250);
        assert_eq!(v["response_timeout_ms"], 5000);
        assert_eq!(v["url"], DEFAULT_URL);
        let back: RedisConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back, cfg);
        let partial: RedisConfig = serde_json::from_str(r#"{"url":"redis://x:1"}"#).unwrap();
        assert_eq!(partial.url, "redis://x:1");
        assert_eq!(partial.max_idle_blocking, 16);
        assert_eq!(partial.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn builders_set_fields() {
        let cfg = RedisConfig::new("redis://a:1")
            .with_url("redis://b:2")
            .with_connect_timeout(Duration::from_millis(1))
            .with_response_timeout(Duration::from_millis(2))
            .with_max_idle_blocking(3)
            .with_shared_block_slice(Duration::from_millis(4))
            .with_reconnect_retries(5);
        assert_eq!(cfg.url, "redis://b:2");
        assert_eq!(cfg.connect_timeout, Duration::from_millis(1));
        assert_eq!(cfg.response_timeout, Duration::from_millis(2));
        assert_eq!(cfg.max_idle_blocking, 3);
        assert_eq!(cfg.shared_block_slice, Duration::from_millis(4));
        assert_eq!(cfg.reconnect_retries, 5);
    }
}
