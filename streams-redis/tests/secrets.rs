//! A password in the server URL never shows: not in `Debug` or `Display`
//! output, not in errors (wrong password, closed port, unreadable URL) or
//! their sources, not in serialized configurations, and not in any log
//! line or span, captured at TRACE level while connecting, working and
//! failing.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use streams_core::{ConsumerGroupConfig, Manager, ManagerConfig, StreamError};
use streams_redis::testing::{RedisServer, free_port};
use streams_redis::{RedisBackend, RedisConfig};
use tracing_subscriber::fmt::format::FmtSpan;

const SECRET: &str = "Pa55-w0rd-that-must-not-leak";

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An error as people and logs see it: `Display`, `Debug`, and every
/// source in the chain.
fn shown(e: &StreamError) -> String {
    let mut out = format!("{e}\n{e:?}\n");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(&format!("{s}\n{s:?}\n"));
        source = s.source();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_show() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = RedisServer::start().expect("redis-server on PATH");
    let port = server.port();
    let admin = redis::Client::open(server.url()).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", &format!(">{SECRET}"), "~*", "+@all"])
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let mut seen: Vec<String> = Vec::new();

    // Configurations: Debug, serialization, the redacted URL.
    let good = format!("redis://app:{SECRET}@127.0.0.1:{port}/0");
    let config = RedisConfig::new(&good).with_connect_timeout(Duration::from_secs(2));
    seen.push(format!("{config:?}"));
    seen.push(serde_json::to_string(&config).unwrap());
    seen.push(config.redacted_url());
    for url in [
        format!("redis://:{SECRET}@127.0.0.1:1"),
        format!("rediss://user:{SECRET}@example.invalid"),
        format!("redis+unix:///tmp/x.sock?db=0&pass={SECRET}"),
        format!("redis+unix:///tmp/x.sock?password={SECRET}"),
    ] {
        let c = RedisConfig::new(url);
        seen.push(format!("{c:?}"));
        seen.push(serde_json::to_string(&c).unwrap());
    }

    // A backend and a manager that work: their Debug, reports and errors.
    let backend = RedisBackend::from_config(config.clone()).await.unwrap();
    seen.push(format!("{backend:?}"));
    let manager_config = ManagerConfig::default()
        .with_namespace("secrets")
        .with_consumer_id("w");
    seen.push(format!("{manager_config:?}"));
    seen.push(serde_json::to_string(&manager_config).unwrap());
    let m = Manager::new(backend.clone(), manager_config).unwrap();
    m.initialize().await.unwrap();
    m.create_consumer_group(
        &ConsumerGroupConfig::new("g", ["s"]).with_block(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    m.send_message("s", json!({"k": 1}), None).await.unwrap();
    let got = m.read_messages("g", None, None).await.unwrap();
    m.acknowledge(&got[0], "g").await.unwrap();
    seen.push(format!("{m:?}"));
    seen.push(format!("{:?}", m.health().await.unwrap()));
    seen.push(format!("{:?}", m.get_stats().await.unwrap()));
    seen.push(shown(
        &m.read_messages("nope", None, None).await.unwrap_err(),
    ));
    backend.delete_namespace("secrets").await.unwrap();

    // Failures: a wrong password, a server that is not there, URLs the
    // client cannot read.
    let closed = free_port().unwrap();
    for url in [
        format!("redis://app:{SECRET}-wrong@127.0.0.1:{port}"),
        format!("redis://:{SECRET}@127.0.0.1:{port}"),
        format!("redis://:{SECRET}@127.0.0.1:{closed}"),
        format!("redis://u:{SECRET}@127.0.0.1:notaport"),
        format!("redis://u:{SECRET}@127.0.0.1:{port}/notadb"),
        format!("redis+unix:///nonexistent/xnai.sock?pass={SECRET}"),
        format!("bogus://u:{SECRET}@h"),
    ] {
        let config = RedisConfig::new(&url)
            .with_connect_timeout(Duration::from_millis(500))
            .with_reconnect_retries(0);
        let err = RedisBackend::from_config(config)
            .await
            .expect_err("cannot connect");
        if url.contains("-wrong@") {
            assert!(
                matches!(&err, StreamError::PermissionDenied { command, .. } if command == "AUTH"),
                "{err:?}"
            );
        }
        seen.push(shown(&err));
        let connect = RedisBackend::connect(&url)
            .await
            .expect_err("cannot connect");
        seen.push(shown(&connect));
    }

    // A server that goes away under a working backend.
    drop(server);
    let gone = m
        .send_message("s", json!({"k": 2}), None)
        .await
        .unwrap_err();
    seen.push(shown(&gone));
    seen.push(format!("{:?}", m.readiness().await.unwrap()));

    for text in &seen {
        assert!(!text.contains(SECRET), "the password shows in: {text}");
    }
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("connected to redis") && logs.contains("send_message"),
        "the subscriber captured nothing useful:\n{logs}"
    );
    assert!(
        !logs.contains(SECRET),
        "the password shows in the logs:\n{logs}"
    );
}
