//! The whole conformance suite under a Redis ACL user that has exactly the
//! permissions `docs/security.md` gives: [`AclRules`] for the namespaces
//! the suite uses (every case has its own, `xt-<...>`, so the key pattern
//! is the prefix form, `~xt-*`), on a private `redis-server`. A command
//! the backend sends and the rules forget fails a case with
//! `PermissionDenied`.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use streams_conformance::{DynBackend, TestBackend};
use streams_redis::testing::{self, RedisServer};
use streams_redis::{AclRules, RedisBackend};

/// The prefix of every namespace the suite makes (`namespace_for`).
const SUITE_PREFIX: &str = "xt-";

/// The URL of the ACL user on a private server, started once per process
/// (its watchdog stops it when the process exits).
fn user_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let server = RedisServer::start().expect("redis-server on PATH for the ACL tests");
        let admin = redis::Client::open(server.url()).expect("the private server's URL");
        let mut conn = admin.get_connection().expect("connect as the default user");
        let rules = AclRules::namespace_prefix(SUITE_PREFIX).expect("a valid prefix");
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("suite")
            .arg("reset")
            .arg("on")
            .arg(">suite-secret")
            .arg(rules.rules())
            .query::<()>(&mut conn)
            .expect("ACL SETUSER of the suite's user");
        // The default user may do anything; make sure nothing falls back to it.
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg("off")
            .query::<()>(&mut conn)
            .expect("switch the default user off");
        let url = format!("redis://suite:suite-secret@127.0.0.1:{}", server.port());
        std::mem::forget(server);
        url
    })
}

/// Each case connects as the ACL user; cleanup runs as that user too
/// (`SCAN` and `UNLINK` are among its commands).
struct AclHarness;

#[async_trait]
impl TestBackend for AclHarness {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn connect(&self) -> DynBackend {
        match RedisBackend::connect(user_url()).await {
            Ok(backend) => Arc::new(backend),
            Err(e) => panic!("cannot connect as the ACL user: {e}"),
        }
    }

    async fn cleanup(&self, namespace: &str) {
        if let Err(e) = testing::cleanup(user_url(), namespace).await {
            panic!("cannot clean up namespace `{namespace}` as the ACL user: {e}");
        }
    }
}

streams_conformance::conformance_suite!(AclHarness);

/// The harness really is confined: outside the prefix, and commands
/// beyond the rules, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_user_is_confined() {
    let client = redis::Client::open(user_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let outside = redis::cmd("XADD")
        .arg("elsewhere")
        .arg("*")
        .arg("k")
        .arg("v")
        .query_async::<String>(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(outside.code(), Some("NOPERM"), "{outside}");
    let flush = redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(flush.code(), Some("NOPERM"), "{flush}");
    let inside: String = redis::cmd("XADD")
        .arg("xt-confined:{s}")
        .arg("*")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!inside.is_empty());
    testing::cleanup(user_url(), "xt-confined").await.unwrap();
}
