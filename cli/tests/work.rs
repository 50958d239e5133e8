//! `xnai-streams work`: a command per message, settled by its exit status,
//! as a real process on the test Redis, stopped with SIGTERM.

#![allow(clippy::unwrap_used, reason = "test helpers")]

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Ns, one_error_line};
use serde_json::json;
use xnai_streams::{ConsumerGroupConfig, RetryPolicy, StreamBackend};

/// Waits for `check`, failing after 20 s.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the worker with SIGTERM; returns its exit code and stdout.
fn terminate(mut child: Child) -> (Option<i32>, String, String) {
    let pid = child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the worker did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn work_feeds_each_message_to_the_command_and_drains_on_sigterm() {
    let ns = Ns::new("work");
    let m = ns.manager("producer");
    ns.group(&m, "g", &["jobs"]);
    let dir = std::env::temp_dir().join(format!("xnai-work-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let seen = dir.join("seen.jsonl");
    let script = format!("cat >> {}", seen.display());
    let child = ns
        .process()
        .args([
            "work",
            "g",
            "--concurrency",
            "3",
            "--consumer",
            "w1",
            "--exec",
            &script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for n in 0..6 {
        ns.run(m.send_message("jobs", json!({"n": n}), None))
            .unwrap();
    }
    let key = m.keys().stream("jobs");
    wait_for("every message acknowledged", || {
        let groups = ns.run(m.backend().groups(&key)).unwrap();
        groups
            .first()
            .is_some_and(|g| g.pending == 0 && g.lag == Some(0))
    });
    let (code, stdout, stderr) = terminate(child);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("stopped: processed 6, acked 6"), "{stdout}");
    let lines = std::fs::read_to_string(&seen).unwrap();
    let mut ns_seen: Vec<i64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["data"]["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ns_seen.sort_unstable();
    assert_eq!(
        ns_seen,
        [0, 1, 2, 3, 4, 5],
        "each message once, as JSON on stdin"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn work_settles_by_exit_status() {
    let ns = Ns::new("work-status");
    let m = ns.manager("producer");
    let group = ConsumerGroupConfig::new("g", ["jobs"]).with_retry(RetryPolicy::new(
        1,
        Duration::from_millis(10),
        Duration::from_millis(10),
    ));
    ns.run(m.create_consumer_group(&group)).unwrap();
    // The payload says what the command does; the retry count comes from
    // the environment.
    let script = r#"line=$(cat)
case "$line" in
  *'"kind":"fail"'*) echo "tool failed on try $XNAI_RETRY_COUNT" >&2; exit 3 ;;
  *'"kind":"reject"'*) echo "not a task for us" >&2; exit 65 ;;
  *'"kind":"later"'*) [ "$XNAI_RETRY_COUNT" = 0 ] && { echo "busy" >&2; exit 75; } ;;
esac
exit 0"#;
    let child = ns
        .process()
        .args(["work", "g", "--exec", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for kind in ["ok", "fail", "reject", "later"] {
        ns.run(m.send_message("jobs", json!({ "kind": kind }), None))
            .unwrap();
    }
    wait_for("every message settled", || {
        ns.run(m.dead_letters(10)).unwrap().len() == 2
            && ns
                .run(m.backend().groups(&m.keys().stream("jobs")))
                .unwrap()
                .first()
                .is_some_and(|g| g.pending == 0)
            && ns
                .run(m.backend().len(&m.keys().retry_ready("jobs", "g")))
                .unwrap()
                == 0
    });
    let (code, stdout, stderr) = terminate(child);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("acked 2, retried 2, dead-lettered 2"),
        "{stdout}\n{stderr}"
    );
    let mut reasons: Vec<String> = ns
        .run(m.dead_letters(10))
        .unwrap()
        .into_iter()
        .map(|d| d.dead_letter.unwrap().reason)
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "not a task for us",
            "retry limit reached: the command exited with status 3: tool failed on try 1",
        ]
    );
}

#[test]
fn work_for_an_unknown_group_is_one_error_line() {
    let ns = Ns::new("work-unknown");
    let out = ns
        .cmd()
        .args(["work", "nope", "--exec", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("nope"));
}

#[test]
fn work_creates_a_missing_group_over_the_given_streams() {
    let ns = Ns::new("work-create");
    let m = ns.manager("producer");
    ns.run(m.send_message("jobs", json!({"n": 1}), None))
        .unwrap();
    let child = ns
        .process()
        .args([
            "work",
            "fresh",
            "--stream",
            "jobs",
            "--exec",
            "cat > /dev/null",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let key = m.keys().stream("jobs");
    wait_for("the message handled", || {
        let groups = ns.run(m.backend().groups(&key)).unwrap();
        groups
            .first()
            .is_some_and(|g| g.pending == 0 && g.lag == Some(0))
    });
    let (code, stdout, _) = terminate(child);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("acked 1"), "{stdout}");
    assert_eq!(ns.run(m.group_config("fresh")).unwrap().streams, ["jobs"]);
}
