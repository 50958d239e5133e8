//! A Redis for tests (feature `testing`).
//!
//! [`redis_url`] finds one, in this order, once per process:
//!
//! 1. `REDIS_URL`, if set;
//! 2. `127.0.0.1:6379`, if it answers `PING`;
//! 3. a `redis-server` from `PATH`, started on a free port without
//!    persistence, and stopped when the test process exits (a small watchdog
//!    process ends it, so this also holds when every test runs in its own
//!    process, as under nextest);
//! 4. with the `testcontainers` feature and a Docker engine that answers, a
//!    `redis` container;
//!
//! and otherwise panics with instructions: tests never skip silently.
//!
//! Test data goes under a namespace; [`cleanup`] deletes every key of one.
//! [`RedisServer`] starts a private server for fault tests (kill it, restart
//! it on the same port), never touching the shared one; [`RedisCluster`]
//! starts a private Redis Cluster of them.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use streams_core::Result;

use crate::RedisBackend;

mod cluster;
#[cfg(feature = "testcontainers")]
mod container;
mod server;

pub use cluster::RedisCluster;
pub use server::RedisServer;

/// How to get a Redis when none is found.
const HOW_TO_GET_REDIS: &str = "no Redis server for the tests: set REDIS_URL \
(e.g. REDIS_URL=redis://127.0.0.1:6379), start one on 127.0.0.1:6379, or \
install redis-server on PATH (apt-get install redis-server, brew install \
redis) so the tests can start their own";

/// The URL of the Redis the tests use; found (or started) on first call.
///
/// # Panics
/// If no Redis can be found or started; the message says how to get one.
pub fn redis_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match find_redis() {
        Ok(url) => url,
        Err(why) => panic!("{HOW_TO_GET_REDIS}\n{why}"),
    })
    .clone()
}

/// A backend connected to [`redis_url`].
///
/// # Errors
/// Connection errors.
///
/// # Panics
/// As [`redis_url`].
pub async fn backend() -> Result<RedisBackend> {
    RedisBackend::connect(&redis_url()).await
}

fn find_redis() -> std::result::Result<String, String> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        if !url.trim().is_empty() {
            return Ok(url.trim().to_owned());
        }
    }
    if answers_ping(6379, Duration::from_millis(500)) {
        return Ok(crate::DEFAULT_URL.to_owned());
    }
    let mut tried = Vec::new();
    match RedisServer::start() {
        Ok(server) => {
            let url = server.url();
            // Lives as long as the process; its watchdog stops it at exit.
            std::mem::forget(server);
            return Ok(url);
        }
        Err(e) => tried.push(format!("starting redis-server failed: {e}")),
    }
    #[cfg(feature = "testcontainers")]
    match container::start() {
        Ok(url) => return Ok(url),
        Err(e) => tried.push(format!("testcontainers: {e}")),
    }
    #[cfg(not(feature = "testcontainers"))]
    tried.push("testcontainers: not enabled (feature `testcontainers`)".to_owned());
    Err(tried.join("\n"))
}

/// Whether a Redis on `127.0.0.1:port` answers `PING` within `timeout`.
pub fn answers_ping(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    if stream.set_read_timeout(Some(timeout)).is_err()
        || stream.set_write_timeout(Some(timeout)).is_err()
        || stream.write_all(b"PING\r\n").is_err()
    {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A port that was free a moment ago.
///
/// # Errors
/// If no local port can be bound.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Deletes every key under `namespace` (`<namespace>:*`) with `SCAN` and
/// `UNLINK`; returns how many were deleted.
///
/// # Errors
/// Connection errors.
pub async fn cleanup(url: &str, namespace: &str) -> Result<u64> {
    RedisBackend::connect(url)
        .await?
        .delete_namespace(namespace)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_port_does_not_answer() {
        let port = free_port().unwrap();
        assert!(!answers_ping(port, Duration::from_millis(100)));
    }
}
