//! Faults on private `redis-server` processes (never the shared server):
//! a killed server gives retryable connection errors and the backend
//! recovers after a restart on the same port; a stalled server gives
//! timeouts.

use std::time::{Duration, Instant};

use bytes::Bytes;
use streams_core::StreamError;
use streams_core::backend::{Add, CreateGroup, ReadGroup, StartAt, StreamBackend};
use streams_redis::testing::RedisServer;
use streams_redis::{RedisBackend, RedisConfig};

fn entry(key: &str) -> Add {
    Add::new(
        key,
        vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))],
    )
}

async fn read(b: &RedisBackend, key: &str, block: Duration) -> streams_core::Result<usize> {
    let keys = [key.to_owned()];
    let got = b
        .read_group(ReadGroup::new("g", "c", &keys, 10).with_block(Some(block)))
        .await?;
    Ok(got.iter().map(|k| k.entries.len()).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_gives_connection_errors_then_recovers() {
    let mut server = RedisServer::start().expect("redis-server on PATH");
    let config = RedisConfig::new(server.url())
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_secs(1))
        .with_reconnect_retries(1);
    let b = RedisBackend::from_config(config).await.unwrap();
    b.create_group(CreateGroup::new("s", "g", StartAt::Beginning))
        .await
        .unwrap();
    b.add(entry("s")).await.unwrap();
    assert_eq!(read(&b, "s", Duration::from_millis(50)).await.unwrap(), 1);

    server.kill().unwrap();
    assert!(!server.is_running());
    let err = b.ping().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(err, StreamError::Connection { .. }), "{err:?}");
    let err = read(&b, "s", Duration::from_millis(50)).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    // Same port, no persistence: the data is gone, the group too.
    server.restart().unwrap();
    let started = Instant::now();
    loop {
        match b.ping().await {
            Ok(()) => break,
            Err(e) => {
                assert!(e.is_retryable(), "{e:?}");
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "no recovery: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    match read(&b, "s", Duration::from_millis(50)).await {
        Err(StreamError::NoGroup { stream, group }) => {
            assert_eq!((stream.as_str(), group.as_str()), ("s", "g"))
        }
        other => panic!("expected NOGROUP after a restart without persistence: {other:?}"),
    }
    b.create_group(CreateGroup::new("s", "g", StartAt::Beginning))
        .await
        .unwrap();
    b.add(entry("s")).await.unwrap();
    assert_eq!(read(&b, "s", Duration::from_millis(50)).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_server_gives_timeouts() {
    let server = RedisServer::start_with_args(&["--enable-debug-command", "yes"])
        .expect("redis-server on PATH");
    let config = RedisConfig::new(server.url())
        .with_response_timeout(Duration::from_millis(200))
        .with_block_margin(Duration::from_millis(200));
    let b = RedisBackend::from_config(config).await.unwrap();
    b.create_group(CreateGroup::new("s", "g", StartAt::End))
        .await
        .unwrap();
    // Leaves a connection in the blocking pool: a new connection would wait
    // out the stall in its handshake, under the connect timeout instead.
    assert_eq!(read(&b, "s", Duration::from_millis(10)).await.unwrap(), 0);

    let client = redis::Client::open(server.url()).unwrap();
    let no_timeout = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut other = client
        .get_multiplexed_async_connection_with_config(&no_timeout)
        .await
        .unwrap();
    let sleeper = tokio::spawn(async move {
        let mut cmd = redis::cmd("DEBUG");
        cmd.arg("SLEEP").arg("1.5");
        cmd.query_async::<()>(&mut other).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    match b.ping().await {
        Err(StreamError::Timeout { operation, after }) => {
            assert_eq!(operation, "PING");
            assert_eq!(after, Duration::from_millis(200));
        }
        other => panic!("{other:?}"),
    }
    match read(&b, "s", Duration::from_millis(100)).await {
        Err(StreamError::Timeout { operation, after }) => {
            assert_eq!(operation, "XREADGROUP");
            // The read's first step (the fair read script, which does not
            // block) runs under the command connection's timeout.
            assert_eq!(after, Duration::from_millis(200));
        }
        other => panic!("{other:?}"),
    }
    sleeper.await.unwrap().unwrap();
    b.ping().await.unwrap();
    assert_eq!(read(&b, "s", Duration::from_millis(50)).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_persistence_keeps_streams_and_groups() {
    let mut server =
        RedisServer::start_with_args(&["--appendonly", "yes", "--appendfsync", "always"])
            .expect("redis-server on PATH");
    let b = RedisBackend::connect(&server.url()).await.unwrap();
    b.create_group(CreateGroup::new("s", "g", StartAt::Beginning))
        .await
        .unwrap();
    b.add(entry("s")).await.unwrap();
    server.kill().unwrap();
    server.restart().unwrap();
    let started = Instant::now();
    while b.ping().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.len("s").await.unwrap(), 1);
    assert_eq!(read(&b, "s", Duration::from_millis(50)).await.unwrap(), 1);
}
