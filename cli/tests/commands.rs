//! The `xnai-streams` operator commands, run as a real binary against the
//! test Redis, each test in a namespace of its own: output, JSON shapes,
//! exit codes, and one-line errors for bad input.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::json;
use xnai_streams::{PeekQuery, StreamBackend};

use common::{Ns, json, one_error_line, stdout};

#[test]
fn help_documents_the_exit_codes() {
    let mut cmd = assert_cmd::Command::new(common::BIN);
    cmd.arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes:"))
        .stdout(predicate::str::contains("2  the command line is wrong"))
        .stdout(predicate::str::contains("dlq"));
    let mut health = assert_cmd::Command::new(common::BIN);
    health
        .args(["health", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "0 healthy, 1 degraded, 2 unhealthy",
        ));
}

#[test]
fn durable_send_prints_what_it_wrote_when_replicas_do_not_confirm() {
    let ns = Ns::new("durable");
    // More replicas than the test server has: written, not confirmed.
    let out = ns
        .cmd()
        .args([
            "send",
            "jobs",
            "n:=1",
            "--replicas",
            "9",
            "--durable-timeout",
            "100",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "written, not confirmed: {out:?}"
    );
    let error = one_error_line(&out);
    assert!(error.contains("not confirmed durable"), "{error}");
    assert!(error.contains("of 9 replica(s)"), "{error}");
    let id = stdout(&out).trim().to_owned();
    let m = ns.manager("t");
    let sent = ns.run(m.peek_messages(&PeekQuery::new("jobs"))).unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].id, id, "the id printed is the entry written");
    // Asking for nothing is refused before anything is sent.
    let out = ns
        .cmd()
        .args(["send", "jobs", "n:=2", "--replicas", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(one_error_line(&out).contains("asks for nothing"), "{out:?}");
    let sent = ns.run(m.peek_messages(&PeekQuery::new("jobs"))).unwrap();
    assert_eq!(sent.len(), 1);
    // Replicas and fsync together: this server (Redis 7.0) cannot fsync
    // on request, and says so before writing; a 7.2 one without an
    // append-only file refuses too.
    let out = ns
        .cmd()
        .args(["send", "jobs", "n:=4", "--replicas", "1", "--fsync"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let error = one_error_line(&out);
    assert!(error.contains("WAITAOF"), "{error}");
    let sent = ns.run(m.peek_messages(&PeekQuery::new("jobs"))).unwrap();
    assert_eq!(sent.len(), 1, "nothing more was written");
    // A timeout alone asks for nothing: the command line is wrong.
    let out = ns
        .cmd()
        .args(["send", "jobs", "n:=3", "--durable-timeout", "100"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn send_prints_ids_and_refuses_bad_input() {
    let ns = Ns::new("send");
    let out = ns
        .cmd()
        .args(["send", "jobs", "agent=cline-1", "n:=3", "tags:=[\"a\"]"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = stdout(&out).trim().to_owned();
    let m = ns.manager("t");
    let sent = ns.run(m.peek_messages(&PeekQuery::new("jobs"))).unwrap();
    assert_eq!(sent[0].id, id);
    assert_eq!(
        serde_json::Value::Object(sent[0].data.clone()),
        json!({"agent": "cline-1", "n": 3, "tags": ["a"]})
    );
    ns.cmd()
        .args(["send", "jobs", "--json", r#"{"task": "R1"}"#])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"^\d+-\d+\n$").unwrap());

    let dir = std::env::temp_dir().join(format!("{}.jsonl", ns.name));
    std::fs::write(&dir, "{\"a\": 1}\n\n{\"a\": 2}\n{\"a\": 3}\n").unwrap();
    let out = ns
        .cmd()
        .args(["send", "jobs", "--file"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).lines().count(), 3);
    std::fs::write(&dir, "{\"a\": 1}\n[2]\n").unwrap();
    let out = ns
        .cmd()
        .args(["send", "jobs", "--file"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("line 2"));
    std::fs::remove_file(&dir).unwrap();
    let length = ns
        .run(m.peek_messages(&PeekQuery::new("jobs")))
        .unwrap()
        .len();
    assert_eq!(length, 5, "a bad file sends nothing");

    for (args, needle) in [
        (vec!["send", "jobs", "oops"], "malformed field `oops`"),
        (vec!["send", "jobs", "n:=nope"], "invalid JSON in field"),
        (vec!["send", "jobs", "--json", "{"], "invalid JSON payload"),
        (vec!["send", "jobs", "--json", "[1]"], "not a JSON object"),
        (vec!["send", "jobs"], "nothing to send"),
        (vec!["send", "bad name", "a=1"], "invalid stream name"),
    ] {
        let out = ns.cmd().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(one_error_line(&out).contains(needle), "{args:?}: {out:?}");
    }
    ns.cmd()
        .args(["send", "jobs", "a=1", "--json", "{}"])
        .assert()
        .code(2);
}

#[test]
fn streams_groups_and_stats_show_what_is_there() {
    let ns = Ns::new("inspect");
    let m = ns.manager("w1");
    ns.group(&m, "g", &["s1", "s2"]);
    ns.run(m.send_batch("s1", vec![json!({"n": 1}), json!({"n": 2})], None))
        .unwrap();
    ns.run(m.send_message("s2", json!({"n": 3}), None)).unwrap();

    ns.cmd()
        .arg("streams")
        .assert()
        .success()
        .stdout(predicate::str::contains("s1").and(predicate::str::contains("LENGTH")));
    let streams = json(&ns.cmd().args(["streams", "--json"]).output().unwrap());
    assert_eq!(
        streams,
        json!([
            {"name": "s1", "partitions": 1, "length": 2, "groups": ["g"]},
            {"name": "s2", "partitions": 1, "length": 1, "groups": ["g"]},
        ])
    );
    let each = json(
        &ns.cmd()
            .args(["streams", "--partitions", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        each,
        json!([
            {"name": "s1", "length": 2, "groups": ["g"]},
            {"name": "s2", "length": 1, "groups": ["g"]},
        ])
    );
    let groups = json(&ns.cmd().args(["groups", "--json"]).output().unwrap());
    assert_eq!(groups[0]["group"], "g");
    assert_eq!(groups[0]["streams"][0]["stream"], "s1");
    assert_eq!(groups[0]["streams"][0]["lag"], 2);
    ns.cmd()
        .arg("groups")
        .assert()
        .success()
        .stdout(predicate::str::contains("CLAIMABLE"));
    let stats = json(&ns.cmd().args(["stats", "--json"]).output().unwrap());
    assert_eq!(stats["streams"].as_array().unwrap().len(), 2);
    assert_eq!(stats["groups"][0]["group"], "g");
    assert_eq!(stats["dlq"]["total"], 0);
    ns.cmd()
        .arg("stats")
        .assert()
        .success()
        .stdout(predicate::str::contains("dead letters: 0"));
}

#[test]
fn consumers_and_pending_show_who_holds_what() {
    let ns = Ns::new("pending");
    let w1 = ns.manager("w1");
    let w2 = ns.manager("w2");
    ns.group(&w1, "g", &["s"]);
    ns.run(w1.send_batch(
        "s",
        vec![json!({"n": 1}), json!({"n": 2}), json!({"n": 3})],
        None,
    ))
    .unwrap();
    let held = ns.run(w1.read_messages("g", Some(2), None)).unwrap();
    let other = ns.run(w2.read_messages("g", Some(1), None)).unwrap();
    ns.run(w2.acknowledge(&other[0], "g")).unwrap();

    ns.cmd()
        .args(["consumers", "g"])
        .assert()
        .success()
        .stdout(predicate::str::contains("w1").and(predicate::str::contains("w2")));
    let rows = json(
        &ns.cmd()
            .args(["consumers", "g", "--json"])
            .output()
            .unwrap(),
    );
    let w1_row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "w1")
        .unwrap();
    assert_eq!(
        (w1_row["stream"].as_str(), w1_row["pending"].as_u64()),
        (Some("s"), Some(2))
    );

    let pending = json(
        &ns.cmd()
            .args(["pending", "g", "--consumer", "w1", "--json"])
            .output()
            .unwrap(),
    );
    let ids: Vec<&str> = pending
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [held[0].id.as_str(), held[1].id.as_str()]);
    assert_eq!(pending[0]["deliveries"], 1);
    assert_eq!(pending[0]["retry"], false);
    ns.cmd()
        .args(["pending", "g", "--consumer", "w2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing pending"));

    let report = json(
        &ns.cmd()
            .args(["consumers", "prune", "g", "--idle", "0s", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(report, json!({"removed": ["w2"], "kept": [["w1", 2]]}));

    for args in [
        vec!["consumers", "nope"],
        vec!["pending", "nope"],
        vec!["consumers", "prune", "nope"],
    ] {
        let out = ns.cmd().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            one_error_line(&out).contains("`nope` is not known"),
            "{out:?}"
        );
    }
    ns.cmd()
        .args(["pending", "g", "--idle", "soon"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a duration"));
}

#[test]
fn claim_takes_abandoned_work_and_hands_it_back() {
    let ns = Ns::new("claim");
    let dead = ns.manager("dead-worker");
    ns.group(&dead, "g", &["s"]);
    ns.run(dead.send_batch("s", vec![json!({"n": 1}), json!({"n": 2})], None))
        .unwrap();
    let held = ns.run(dead.read_messages("g", Some(2), None)).unwrap();
    assert_eq!(held.len(), 2);

    let report = json(
        &ns.cmd()
            .args(["claim", "g", "--idle", "0s", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(report["group"], "g");
    assert_eq!(report["handed_back"], 2);
    assert_eq!(report["dead_lettered"], 0);
    let claimed = report["claimed"].as_array().unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [held[0].id.as_str(), held[1].id.as_str()], "{report}");
    assert_eq!(claimed[0]["deliveries"], 2);
    // Claiming again changes nothing: the hand-back gave the delivery back.
    ns.cmd()
        .args(["claim", "g", "--idle", "0s"])
        .assert()
        .success()
        .stdout(predicate::str::contains("claimed 2, handed back 2"));
    // Handed back: a worker claims them at once (one crash suspect per claim).
    let worker = ns.manager("worker");
    let mut taken = Vec::new();
    for _ in 0..5 {
        let round = ns
            .run(worker.claim_pending_messages("g", Some(Duration::from_secs(600))))
            .unwrap();
        if round.is_empty() {
            break;
        }
        taken.extend(round);
    }
    assert_eq!(taken.len(), 2);
    assert!(
        taken
            .iter()
            .all(|m| m.delivery.as_ref().unwrap().deliveries == 2)
    );
    ns.cmd().args(["claim", "nope"]).assert().code(1);
}

#[test]
fn health_exit_code_tells_the_state() {
    let ns = Ns::new("health");
    let m = ns.manager("w");
    ns.group(&m, "g", &["s"]);
    ns.cmd()
        .arg("health")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("status: healthy"));
    let report = json(&ns.cmd().args(["health", "--json"]).output().unwrap());
    assert_eq!(
        (report["healthy"].as_bool(), report["status"].as_str()),
        (Some(true), Some("healthy"))
    );

    // Work abandoned past the claim idle time: degraded, still working.
    let slow = xnai_streams::ConsumerGroupConfig::new("abandoned", ["t"])
        .with_claim_idle(std::time::Duration::from_millis(100));
    ns.run(m.create_consumer_group(&slow)).unwrap();
    ns.run(m.send_message("t", serde_json::json!({"n": 1}), None))
        .unwrap();
    let held = ns
        .run(m.read_messages("abandoned", None, Some(std::time::Duration::from_secs(1))))
        .unwrap();
    assert_eq!(held.len(), 1);
    std::thread::sleep(std::time::Duration::from_millis(200));
    ns.cmd()
        .arg("health")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("status: degraded"));
    ns.run(m.acknowledge(&held[0], "abandoned")).unwrap();

    // The group disappears from its stream: reads would fail until recovered.
    let key = m.keys().stream("s");
    ns.run(m.backend().destroy_group(&key, "g")).unwrap();
    ns.cmd().arg("health").assert().code(2).stdout(
        predicate::str::contains("status: unhealthy").and(predicate::str::contains("problem:")),
    );
    let report = json(&ns.cmd().args(["health", "--json"]).output().unwrap());
    assert_eq!(report["status"], "unhealthy");

    let port = streams_redis::testing::free_port().unwrap();
    let mut unreachable = assert_cmd::Command::new(common::BIN);
    unreachable
        .args(["--redis", &format!("redis://127.0.0.1:{port}"), "health"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("backend unreachable"));
}

#[test]
fn bad_targets_are_one_line_errors() {
    let port = streams_redis::testing::free_port().unwrap();
    for (args, needle) in [
        (vec!["--redis", "not a url", "streams"], "redis"),
        (
            vec!["--redis", &format!("redis://127.0.0.1:{port}"), "streams"],
            "connection",
        ),
        (vec!["--namespace", "a:b", "streams"], "namespace"),
    ] {
        let mut cmd = assert_cmd::Command::new(common::BIN);
        let out = cmd.env_remove("REDIS_URL").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(one_error_line(&out).contains(needle), "{args:?}: {out:?}");
    }
    let mut cmd = assert_cmd::Command::new(common::BIN);
    cmd.args(["dlq", "list", "--since", "whenever"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("neither a time"));
}

/// A child process killed when the test ends, pass or fail.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tail_follows_without_consuming_and_stops_on_ctrl_c() {
    let ns = Ns::new("tail");
    let m = ns.manager("w");
    ns.group(&m, "g", &["s"]);
    // The first entry is there before `tail` starts: `--last 1` shows it,
    // which also tells that `tail` is following.
    let first = ns.run(m.send_message("s", json!({"n": 1}), None)).unwrap();
    let child = ns
        .process()
        .args([
            "tail",
            "s",
            "--group",
            "g",
            "--json",
            "--last",
            "1",
            "--interval",
            "50ms",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("tail prints the entry");
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["id"], first.as_str());
    assert_eq!(entry["data"], json!({"n": 1}));
    assert_eq!(entry["group_state"], json!({"state": "new"}));

    let got = ns.run(m.read_messages("g", Some(1), None)).unwrap();
    assert_eq!(got[0].id, first, "tail took nobody's work");
    ns.run(m.send_message("s", json!({"n": 2}), None)).unwrap();
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the next entry");
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["data"], json!({"n": 2}));

    assert_eq!(entry["group_state"], json!({"state": "new"}));
    std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "tail did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));

    // --last shows what is there, with the group's view; --limit stops.
    ns.cmd()
        .args(["tail", "s", "--group", "g", "--last", "2", "--limit", "2"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("[pending: w, delivered 1x")
                .and(predicate::str::contains("[new]")),
        );
    let out = ns
        .cmd()
        .args(["tail", "s", "--group", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&out);
}

#[test]
fn partitioned_streams_are_declared_routed_and_listed_as_one() {
    let ns = Ns::new("partitions");
    ns.cmd()
        .args(["partitions", "orders", "4"])
        .assert()
        .success()
        .stdout(predicate::str::contains("orders"));
    let m = ns.manager("check");
    ns.group(&m, "workers", &["orders"]);
    // The group reads every partition.
    let config = ns.run(m.group_config("workers")).unwrap();
    assert_eq!(
        config.streams,
        ["orders", "orders#1", "orders#2", "orders#3"]
    );

    // By key: the same key, the same partition.
    let orders = ns.run(m.partitioned_stream("orders")).unwrap();
    for _ in 0..3 {
        ns.cmd()
            .args(["send", "orders", "--key", "customer-7", "n:=1"])
            .assert()
            .success();
    }
    let home = orders.stream_for_key("customer-7");
    let lengths = json(
        &ns.cmd()
            .args(["streams", "--partitions", "--json"])
            .output()
            .unwrap(),
    );
    let length_of = |name: &str| {
        lengths
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map_or(0, |s| s["length"].as_u64().unwrap())
    };
    assert_eq!(length_of(&home), 3, "{lengths}");
    // By a field of each line of a file; a line without it sends nothing.
    let dir = std::env::temp_dir().join(format!("xt-partitions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("orders.jsonl");
    std::fs::write(&file, "{\"cust\":\"a\"}\n{\"cust\":\"b\"}\n{\"cust\":5}\n").unwrap();
    let out = stdout(
        &ns.cmd()
            .args(["send", "orders", "--key-field", "cust", "--file"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    std::fs::write(&file, "{\"cust\":\"a\"}\n{\"other\":1}\n").unwrap();
    let refused = ns
        .cmd()
        .args(["send", "orders", "--key-field", "cust", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        one_error_line(&refused).contains("message 2 has no string or integer field `cust`"),
        "{refused:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // Listed as one stream, its lengths added up; each partition on request.
    let rows = json(&ns.cmd().args(["streams", "--json"]).output().unwrap());
    assert_eq!(
        rows,
        json!([{"name": "orders", "partitions": 4, "length": 6, "groups": ["workers"]}])
    );
    let shown = json(
        &ns.cmd()
            .args(["partitions", "orders", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(shown[0]["partitions"], 4);
    assert_eq!(
        shown[0]["lengths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_u64().unwrap())
            .sum::<u64>(),
        6
    );
    // Fewer partitions: refused, one line, exit 1.
    let shrink = ns
        .cmd()
        .args(["partitions", "orders", "2"])
        .output()
        .unwrap();
    assert_eq!(shrink.status.code(), Some(1));
    assert!(
        one_error_line(&shrink).contains("never removed"),
        "{shrink:?}"
    );
}
