//! The Redis a run uses, and `redis-benchmark` as the server's own limit.

use std::process::Command;
use std::time::Duration;

use streams_redis::testing::RedisServer;

use crate::Result;

/// A private `redis-server` on a free port, without persistence; stopped
/// when dropped.
///
/// # Errors
/// If `redis-server` is not on `PATH` or does not start.
pub fn start_private() -> Result<RedisServer> {
    Ok(RedisServer::start()?)
}

/// The server's version (`INFO server`).
///
/// # Errors
/// Connection errors.
pub async fn version(url: &str) -> Result<String> {
    let mut conn = crate::raw::connect(url).await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned())
}

/// Host and port of a `redis://host:port[/db]` URL.
fn host_port(url: &str) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or("redis-benchmark needs a plain redis:// URL")?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "6379"));
    Ok((host.to_owned(), port.parse()?))
}

/// `redis-benchmark -P 64 -n <n> XADD <key> * <the 5 fields>`: requests
/// per second, from its CSV output. The key is deleted afterwards.
///
/// # Errors
/// If `redis-benchmark` is missing or its output cannot be read.
pub async fn redis_benchmark(url: &str, key: &str, n: usize) -> Result<f64> {
    let (host, port) = host_port(url)?;
    let mut cmd = Command::new("redis-benchmark");
    cmd.args(["-h", &host, "-p", &port.to_string(), "-P", "64", "--csv"])
        .args(["-n", &n.to_string()])
        .args(["XADD", key, "*"]);
    for (name, value) in crate::shape::raw(0, 0) {
        cmd.arg(name).arg(value);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    if !out.status.success() {
        return Err(format!("redis-benchmark failed: {}", out.status).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .filter(|l| l.starts_with("\"XADD"))
        .find_map(|l| {
            l.split("\",\"")
                .nth(1)?
                .trim_matches('"')
                .parse::<f64>()
                .ok()
        })
        .ok_or_else(|| format!("no figure in redis-benchmark's output: {text}"))?;
    let mut conn = crate::raw::connect(url).await?;
    let _: i64 = redis::cmd("DEL").arg(key).query_async(&mut conn).await?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(rps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            host_port("redis://127.0.0.1:7000").unwrap(),
            ("127.0.0.1".to_owned(), 7000)
        );
        assert_eq!(
            host_port("redis://:pw@localhost/0").unwrap(),
            ("localhost".to_owned(), 6379)
        );
        assert!(host_port("rediss://x:1").is_err());
    }
}
