//! The last resort: a `redis` container through testcontainers.

use std::path::Path;
use std::process::{Command, Stdio};

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

/// Whether a Docker engine is configured at all; testcontainers is only
/// asked when it is.
fn docker_present() -> bool {
    std::env::var_os("DOCKER_HOST").is_some() || Path::new("/var/run/docker.sock").exists()
}

/// Starts a `redis` container and returns its URL.
pub(super) fn start() -> Result<String, String> {
    if !docker_present() {
        return Err("no Docker engine (neither DOCKER_HOST nor /var/run/docker.sock)".into());
    }
    // Our own runtime on our own thread: the caller may be on a runtime
    // worker, where blocking on another runtime is not allowed.
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let container = GenericImage::new("redis", "7.2-alpine")
                .with_exposed_port(6379.tcp())
                .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
                .with_startup_timeout(std::time::Duration::from_secs(60))
                .start()
                .await
                .map_err(|e| e.to_string())?;
            let host = container.get_host().await.map_err(|e| e.to_string())?;
            let port = container
                .get_host_port_ipv4(6379)
                .await
                .map_err(|e| e.to_string())?;
            reap_at_exit(container.id());
            // Dropping it would remove the container; it lives as long
            // as the process and the reaper removes it afterwards.
            std::mem::forget(container);
            Ok(format!("redis://{host}:{port}"))
        })
    })
    .join()
    .map_err(|_| "the container thread panicked".to_owned())?
}

/// Removes the container when this process is gone, if the docker CLI is
/// there; otherwise the container outlives the tests.
fn reap_at_exit(id: &str) {
    let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; docker rm -f "$2""#;
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("xnai-redis-reaper")
        .arg(std::process::id().to_string())
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
