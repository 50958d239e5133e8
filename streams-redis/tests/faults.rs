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

/// Commands queued behind a stalled server, then cut off by its death,
/// each fail with a retryable error, none with another's reply, and the
/// backend works again after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_fails_every_queued_caller_retryably() {
    let mut server = RedisServer::start().expect("redis-server on PATH");
    let config = RedisConfig::new(server.url())
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_secs(5))
        .with_reconnect_retries(1);
    let b = RedisBackend::from_config(config).await.unwrap();
    b.add(entry("s")).await.unwrap();

    server.pause().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let b = b.clone();
        tasks.spawn(async move { b.add(entry("s")).await });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.kill().unwrap();
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        let e = done
            .unwrap()
            .expect_err("no reply can come from a killed server");
        assert!(e.is_retryable(), "{e:?}");
        failed += 1;
    }
    assert_eq!(failed, 64);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    server.restart().unwrap();
    let started = Instant::now();
    while b.ping().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.add(entry("s")).await.unwrap();
}

/// A connection of the test's own to a private server.
async fn raw_conn(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("a valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection to the private server")
}

/// A blocking read reads the group right behind its wait, on the wait's
/// connection. When the server lost its scripts meanwhile, that read is
/// refused; the wait's entry is then read the ordinary way (the script is
/// loaded again), not lost and not left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_read_survives_scripts_flushed_while_it_waits() {
    let server = RedisServer::start().expect("redis-server on PATH");
    let b = RedisBackend::connect(&server.url()).await.unwrap();
    for key in ["a", "b"] {
        b.create_group(CreateGroup::new(key, "g", StartAt::End))
            .await
            .unwrap();
    }
    let mut other = raw_conn(&server).await;
    let keys = ["a".to_owned(), "b".to_owned()];
    // Count 1 over two keys: the fair read script does the reading.
    let read =
        b.read_group(ReadGroup::new("g", "c", &keys, 1).with_block(Some(Duration::from_secs(5))));
    let poke = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async::<()>(&mut other)
            .await
            .unwrap();
        redis::cmd("XADD")
            .arg("b")
            .arg("*")
            .arg("k")
            .arg("v")
            .query_async::<String>(&mut other)
            .await
            .unwrap()
    };
    let started = Instant::now();
    let (got, id) = tokio::join!(read, poke);
    let got = got.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].key, "b");
    assert_eq!(got[0].entries.len(), 1);
    assert_eq!(got[0].entries[0].entry.id.as_str(), id);
}

/// Several entries arriving on several keys while a read of count 2 waits:
/// the read behind the wait delivers 2, and the rest stay for later reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_read_keeps_its_count_when_many_arrive() {
    let server = RedisServer::start().expect("redis-server on PATH");
    let b = RedisBackend::connect(&server.url()).await.unwrap();
    for key in ["a", "b", "c"] {
        b.create_group(CreateGroup::new(key, "g", StartAt::End))
            .await
            .unwrap();
    }
    let mut other = raw_conn(&server).await;
    let keys = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
    let read =
        b.read_group(ReadGroup::new("g", "c", &keys, 2).with_block(Some(Duration::from_secs(5))));
    let poke = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in ["a", "b", "c"] {
            for _ in 0..3 {
                pipe.cmd("XADD").arg(key).arg("*").arg("k").arg("v");
            }
        }
        pipe.query_async::<redis::Value>(&mut other).await.unwrap();
    };
    let (got, ()) = tokio::join!(read, poke);
    let got: usize = got.unwrap().iter().map(|k| k.entries.len()).sum();
    assert_eq!(got, 2);
    let mut rest = 0;
    loop {
        let more = b
            .read_group(
                ReadGroup::new("g", "c", &keys, 2).with_block(Some(Duration::from_millis(50))),
            )
            .await
            .unwrap();
        let n: usize = more.iter().map(|k| k.entries.len()).sum();
        if n == 0 {
            break;
        }
        assert!(n <= 2, "{n}");
        rest += n;
    }
    assert_eq!(rest, 7);
}
