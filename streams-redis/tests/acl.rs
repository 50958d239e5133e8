//! The backend under Redis ACL users: one that may not use transactions
//! (`MULTI`/`EXEC`), the least-privileged user of `docs/security.md`
//! (whose line must be what [`AclRules`] gives), and users lacking one
//! command, whose errors name it.

use std::time::Duration;

use serde_json::json;
use streams_core::{ConsumerGroupConfig, DlqConfig, Manager, ManagerConfig, StreamError};
use streams_redis::testing::RedisServer;
use streams_redis::{AclRules, RedisBackend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_for_a_user_without_transactions() {
    let server = RedisServer::start().expect("redis-server on PATH");
    let admin = redis::Client::open(server.url()).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    let mut setuser = redis::cmd("ACL");
    setuser
        .arg("SETUSER")
        .arg("worker")
        .arg("on")
        .arg(">worker-secret")
        .arg("~*")
        .arg("+@all")
        .arg("-multi")
        .arg("-exec");
    setuser.query_async::<()>(&mut conn).await.unwrap();
    // The user really cannot open a transaction.
    let user_url = format!("redis://worker:worker-secret@127.0.0.1:{}", server.port());
    let user = redis::Client::open(user_url.as_str()).unwrap();
    let mut user_conn = user.get_multiplexed_async_connection().await.unwrap();
    let refused = redis::cmd("MULTI").query_async::<()>(&mut user_conn).await;
    assert!(refused.is_err(), "MULTI was allowed");

    let backend = RedisBackend::connect(&user_url).await.unwrap();
    let config = ManagerConfig::default()
        .with_consumer_id("w")
        .with_dlq(DlqConfig::default().with_retry_backoff(Duration::ZERO));
    let m = Manager::new(backend, config).unwrap();
    m.create_consumer_group(
        &ConsumerGroupConfig::new("g", ["s"]).with_block(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    m.send_message("s", json!({"n": 1}), None).await.unwrap();
    let got = m.read_messages("g", None, None).await.unwrap();
    assert!(m.retry_message(&got[0]).await.unwrap());
    let copy = m
        .read_messages("g", None, Some(Duration::from_secs(2)))
        .await
        .unwrap();
    assert_eq!(copy[0].retry_count, 1);
    assert!(copy[0].delivery.as_ref().unwrap().from_retry);
    // Acknowledging a retry copy also deletes it from the ready stream.
    assert!(m.acknowledge(&copy[0], "g").await.unwrap());
    let ready = m.keys().retry_ready("s", "g");
    let len: u64 = redis::cmd("XLEN")
        .arg(&ready)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 0);
    m.send_message("s", json!({"n": 2}), None).await.unwrap();
    let more = m.read_messages("g", None, None).await.unwrap();
    m.send_to_dlq(&more[0], "bad", Some("g")).await.unwrap();
    assert_eq!(m.get_stats().await.unwrap().dlq_entries, 1);
    assert!(m.health().await.unwrap().healthy);
}

/// The user name and password of the `ACL SETUSER` line in `docs/security.md`.
const DOC_USER: &str = "xnai-t1";
const DOC_PASSWORD: &str = "change-me-to-a-long-secret";

/// `docs/security.md`, read when the test runs.
fn security_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `ACL SETUSER` line of the documentation, for namespace `t1`.
fn documented_line() -> String {
    let doc = security_doc();
    let lines: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with(&format!("ACL SETUSER {DOC_USER} ")))
        .collect();
    assert_eq!(lines.len(), 1, "one ACL SETUSER line for {DOC_USER}");
    lines[0].to_owned()
}

#[test]
fn the_documented_line_is_what_acl_rules_gives() {
    let rules = AclRules::namespace("t1").unwrap();
    assert_eq!(
        documented_line(),
        format!("ACL SETUSER {DOC_USER} reset on >{DOC_PASSWORD} {rules}")
    );
    // Every command granted is explained.
    let doc = security_doc();
    for command in streams_redis::acl::COMMANDS {
        assert!(
            // Table cells escape `|`.
            doc.contains(&format!("`{}`", command.replace('|', "\\|"))),
            "docs/security.md does not explain `{command}`"
        );
    }
}

/// Runs `ACL SETUSER <name> reset on ><password> <rules> <extra>`.
async fn set_user(
    conn: &mut redis::aio::MultiplexedConnection,
    name: &str,
    password: &str,
    rules: &[String],
    extra: &[&str],
) {
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(name)
        .arg("reset")
        .arg("on")
        .arg(format!(">{password}"))
        .arg(rules)
        .arg(extra)
        .query_async::<()>(conn)
        .await
        .expect("ACL SETUSER");
}

fn manager_as(backend: RedisBackend, namespace: Option<&str>) -> Manager<RedisBackend> {
    let mut config = ManagerConfig::default()
        .with_consumer_id("w")
        .with_dlq(DlqConfig::default().with_retry_backoff(Duration::ZERO));
    if let Some(ns) = namespace {
        config = config.with_namespace(ns);
    }
    Manager::new(backend, config).expect("a valid configuration")
}

/// The user of the documented line runs its namespace (sending, reading,
/// retrying, dead-lettering, health, the operator views) and is refused
/// everything else: other namespaces, keys outside any namespace, and
/// commands beyond the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_user_runs_its_namespace_and_nothing_else() {
    let server = RedisServer::start().expect("redis-server on PATH");
    let admin = redis::Client::open(server.url()).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    // The line exactly as documented.
    let line = documented_line();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "ACL");
    redis::cmd("ACL")
        .arg(&words[1..])
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let url = format!(
        "redis://{DOC_USER}:{DOC_PASSWORD}@127.0.0.1:{}",
        server.port()
    );

    let m = manager_as(RedisBackend::connect(&url).await.unwrap(), Some("t1"));
    m.initialize().await.unwrap();
    m.create_consumer_group(
        &ConsumerGroupConfig::new("g", ["s"]).with_block(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    m.send_message("s", json!({"n": 1}), None).await.unwrap();
    let got = m.read_messages("g", None, None).await.unwrap();
    assert!(m.touch(&got[0]).await.unwrap());
    assert!(m.retry_message(&got[0]).await.unwrap());
    let copy = m
        .read_messages("g", None, Some(Duration::from_secs(2)))
        .await
        .unwrap();
    m.send_to_dlq(&copy[0], "bad", Some("g")).await.unwrap();
    assert_eq!(
        m.dlq_list(&streams_core::DlqQuery::default())
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
    assert_eq!(m.list_streams().await.unwrap().len(), 1);
    assert!(m.readiness().await.unwrap().ready);
    let health = m.health().await.unwrap();
    assert!(health.problems.is_empty(), "{:?}", health.problems);
    assert!(m.delete_consumer_group("g").await.unwrap());

    // Another namespace, and no namespace, are out of reach.
    for ns in [Some("t2"), None] {
        let other = manager_as(RedisBackend::connect(&url).await.unwrap(), ns);
        let err = other
            .send_message("s", json!({"n": 1}), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StreamError::PermissionDenied { command, .. } if command == "XADD"),
            "{ns:?}: {err:?}"
        );
        assert!(!other.readiness().await.unwrap().ready);
    }
    // Commands beyond the list are refused, and so are Pub/Sub channels.
    let user = redis::Client::open(url.as_str()).unwrap();
    let mut user_conn = user.get_multiplexed_async_connection().await.unwrap();
    for cmd in [
        redis::cmd("FLUSHALL"),
        redis::cmd("KEYS").arg("*").clone(),
        redis::cmd("CONFIG").arg("GET").arg("*").clone(),
        redis::cmd("EVAL").arg("return 1").arg(0).clone(),
        redis::cmd("MULTI"),
        redis::cmd("DEL").arg("t1:{s}").clone(),
        redis::cmd("PUBLISH").arg("t1:c").arg("x").clone(),
        redis::cmd("ACL").arg("WHOAMI").clone(),
    ] {
        let refused = cmd.query_async::<redis::Value>(&mut user_conn).await;
        let err = refused.expect_err("refused");
        assert_eq!(err.code(), Some("NOPERM"), "{err}");
    }
}

/// A user lacking one command the library needs gets `PermissionDenied`
/// naming it, whether the library sends it itself or a script runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_names_the_command() {
    let server = RedisServer::start().expect("redis-server on PATH");
    let admin = redis::Client::open(server.url()).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    let rules = AclRules::namespace("t1").unwrap().rules();
    set_user(&mut conn, "full", "full-pw", &rules, &[]).await;
    let url = |user: &str| format!("redis://{user}:{user}-pw@127.0.0.1:{}", server.port());
    let full = manager_as(
        RedisBackend::connect(&url("full")).await.unwrap(),
        Some("t1"),
    );
    full.create_consumer_group(
        &ConsumerGroupConfig::new("g", ["s"]).with_block(Duration::from_millis(100)),
    )
    .await
    .unwrap();

    for (denied, named) in [
        ("xadd", "XADD"),
        ("xack", "XACK"),
        ("hset", "HSET"),
        ("xgroup|create", "XGROUP CREATE"),
        ("xclaim", "XCLAIM"),
    ] {
        let user = format!("no-{}", denied.replace('|', "-"));
        set_user(
            &mut conn,
            &user,
            &format!("{user}-pw"),
            &rules,
            &[&format!("-{denied}")],
        )
        .await;
        let lacking = manager_as(
            RedisBackend::connect(&url(&user)).await.unwrap(),
            Some("t1"),
        );
        full.send_message("s", json!({ "denied": denied }), None)
            .await
            .unwrap();
        let got = full.read_messages("g", Some(1), None).await.unwrap();
        let result = match denied {
            "xadd" => lacking.send_message("s", json!({}), None).await.map(drop),
            "xack" => lacking.acknowledge(&got[0], "g").await.map(drop),
            "hset" | "xgroup|create" => lacking
                .create_consumer_group(&ConsumerGroupConfig::new("g2", ["s2"]))
                .await
                .map(drop),
            _ => lacking.touch(&got[0]).await.map(drop),
        };
        let err = result.expect_err(denied);
        assert!(
            matches!(err, StreamError::PermissionDenied { .. }),
            "{denied}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(named), "{denied}: {text}");
        assert!(!err.is_retryable());
        full.acknowledge(&got[0], "g").await.unwrap();
    }
}
