//! TLS (feature `tls`): a private `redis-server` with a TLS port and a
//! throw-away certificate authority made with `openssl`.
//! Run with `cargo test -p streams-redis --features tls --test tls`.

#![cfg(feature = "tls")]

use std::path::Path;
use std::process::Command;

use redis::{Client, TlsCertificates};
use streams_core::backend::{CreateGroup, StartAt, StreamBackend};
use streams_redis::RedisBackend;
use streams_redis::testing::{RedisServer, free_port};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be on PATH for the TLS test");
    assert!(
        status.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_over_tls_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("xnai-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=xnai-test-ca",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );

    let tls_port = free_port().unwrap().to_string();
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let server = RedisServer::start_with_args(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ])
    .expect("redis-server with TLS support on PATH");

    let url = format!("rediss://127.0.0.1:{tls_port}");
    let certs = TlsCertificates {
        client_tls: None,
        root_cert: Some(std::fs::read(dir.join("ca.crt")).unwrap()),
    };
    let client = Client::build_with_tls(url.as_str(), certs).unwrap();
    let backend = RedisBackend::from_client(client).await.unwrap();
    backend.ping().await.unwrap();
    assert!(
        backend
            .create_group(CreateGroup::new("s", "g", StartAt::Beginning))
            .await
            .unwrap()
    );

    // Without the private CA, the server's certificate is refused.
    assert!(RedisBackend::connect(&url).await.is_err());

    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
