//! The `xnai-streams demo` command: it runs to the end and accounts for every
//! task, in-process and on Redis, and leaves no keys behind on Redis.

use std::process::Command;

use streams_redis::testing;

fn demo(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_xnai-streams"))
        .arg("demo")
        .args(args)
        .output()
        .expect("run xnai-streams demo");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn demo_accounts_for_every_task_in_process() {
    let out = demo(&["--tasks", "30"]);
    assert!(
        out.contains("all accounted for, of 30 tasks: 29 completed, 1 dead-lettered"),
        "{out}"
    );
    assert!(out.contains("stops mid-work"), "{out}");
    assert!(out.contains("claimed"), "{out}");
    assert!(
        out.contains("is poison: sent to the dead-letter queue"),
        "{out}"
    );
    assert!(out.contains("dead-letter queue (1 entries)"), "{out}");
}

#[tokio::test]
async fn demo_runs_on_redis_and_cleans_up() {
    let url = testing::redis_url();
    let namespace = format!("xt-demo-{}", std::process::id());
    let out = demo(&["--redis", &url, "--namespace", &namespace, "--quiet"]);
    assert!(
        out.contains("all accounted for, of 24 tasks: 23 completed, 1 dead-lettered"),
        "{out}"
    );
    let left = testing::cleanup(&url, &namespace).await.expect("cleanup");
    assert_eq!(left, 0, "the demo deletes its namespace");
}
