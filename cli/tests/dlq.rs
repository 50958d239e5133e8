//! `xnai-streams dlq ...` against the test Redis: listing, paging, showing,
//! counting, replaying and purging, with their JSON shapes and exit codes.

#![allow(clippy::unwrap_used)]

mod common;

use predicates::prelude::*;
use serde_json::{Value, json};
use xnai_streams::RedisStreamManager;

use common::{Ns, json, one_error_line, stdout};

/// Sends one message per reason to `s`, reads it through `g` and
/// dead-letters it; returns the dead-letter ids.
fn dead_letter(ns: &Ns, m: &RedisStreamManager, reasons: &[&str]) -> Vec<String> {
    reasons
        .iter()
        .map(|reason| {
            ns.run(async {
                m.send_message("s", json!({ "why": reason }), None).await?;
                let msg = m.read_messages("g", Some(1), None).await?.remove(0);
                m.send_to_dlq(&msg, reason, Some("g")).await
            })
            .unwrap()
        })
        .collect()
}

fn ids(list: &Value) -> Vec<String> {
    list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn dlq_list_show_and_stats() {
    let ns = Ns::new("dlq-read");
    let m = ns.manager("w");
    ns.group(&m, "g", &["s"]);
    let dead = dead_letter(&ns, &m, &["timeout a", "crash", "timeout b"]);

    let all = json(&ns.cmd().args(["dlq", "list", "--json"]).output().unwrap());
    assert_eq!(ids(&all), dead);
    assert_eq!(all["next"], Value::Null);
    let first = &all["entries"][0];
    assert_eq!(first["dead_letter"]["reason"], "timeout a");
    assert_eq!(first["dead_letter"]["group"], "g");
    assert_eq!(first["data"], json!({"why": "timeout a"}));
    assert_eq!(first["status"], "dlq");

    let page = json(
        &ns.cmd()
            .args(["dlq", "list", "--limit", "2", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(ids(&page), dead[..2]);
    let next = page["next"].as_str().unwrap().to_owned();
    let rest = json(
        &ns.cmd()
            .args(["dlq", "list", "--limit", "2", "--after", &next, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(ids(&rest), dead[2..]);
    ns.cmd()
        .args(["dlq", "list", "--limit", "2"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("more: --after '{next}'")));
    let timeouts = json(
        &ns.cmd()
            .args(["dlq", "list", "--reason", "timeout", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(ids(&timeouts), [dead[0].clone(), dead[2].clone()]);
    let recent = json(
        &ns.cmd()
            .args([
                "dlq", "list", "--since", "1h", "--group", "g", "--stream", "s", "--json",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(ids(&recent), dead);
    let none = ns
        .cmd()
        .args(["dlq", "list", "--older-than", "1h"])
        .output()
        .unwrap();
    assert!(stdout(&none).contains("no dead letters"));

    ns.cmd()
        .args(["dlq", "show", &dead[1]])
        .assert()
        .success()
        .stdout(predicate::str::contains("reason         crash"));
    let shown = json(
        &ns.cmd()
            .args(["dlq", "show", &dead[1], "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(shown["id"], dead[1].as_str());
    assert_eq!(shown["dead_letter"]["origin_stream"], "s");
    for (id, needle) in [
        ("1-0", "no dead-letter entry `1-0`"),
        ("nope", "invalid entry id"),
    ] {
        let out = ns.cmd().args(["dlq", "show", id]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(one_error_line(&out).contains(needle), "{out:?}");
    }

    let stats = json(&ns.cmd().args(["dlq", "stats", "--json"]).output().unwrap());
    assert_eq!(stats["total"], 3);
    assert_eq!(
        stats["by_reason"],
        json!({"timeout a": 1, "timeout b": 1, "crash": 1})
    );
    assert_eq!(stats["by_group"], json!({"g": 3}));
    ns.cmd()
        .args(["dlq", "stats", "--reason", "timeout"])
        .assert()
        .success()
        .stdout(predicate::str::contains("dead letters: 2"));
}

#[test]
fn dlq_replay_needs_a_selection_and_yes_for_bulk() {
    let ns = Ns::new("dlq-replay");
    let m = ns.manager("w");
    ns.group(&m, "g", &["s"]);
    let dead = dead_letter(&ns, &m, &["one", "two", "three"]);

    for (args, needle) in [
        (vec!["dlq", "replay"], "say which entries to replay"),
        (vec!["dlq", "replay", "--all"], "add --yes"),
        (vec!["dlq", "replay", "--reason", "o"], "add --yes"),
        (vec!["dlq", "replay", "1-0", "2-0"], "add --yes"),
        (vec!["dlq", "replay", "1-0", "--all", "--yes"], "not both"),
        (
            vec!["dlq", "replay", "--all", "--yes", "--rate", "0"],
            "rate limit",
        ),
    ] {
        let out = ns.cmd().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(one_error_line(&out).contains(needle), "{args:?}: {out:?}");
    }

    let plan = json(
        &ns.cmd()
            .args(["dlq", "replay", "--all", "--dry-run", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["would_replay"].as_array().unwrap().len(), 3);
    assert_eq!(plan["would_replay"][0]["group"], "g");
    assert_eq!(plan["would_replay"][0]["new_id"], Value::Null);
    let still = json(&ns.cmd().args(["dlq", "stats", "--json"]).output().unwrap());
    assert_eq!(still["total"], 3, "a dry run changes nothing");

    ns.cmd()
        .args(["dlq", "replay", &dead[0]])
        .assert()
        .success()
        .stdout(predicate::str::contains("replayed 1"));
    let report = json(
        &ns.cmd()
            .args(["dlq", "replay", "--all", "--yes", "--rate", "100", "--json"])
            .output()
            .unwrap(),
    );
    let replayed: Vec<&str> = report["replayed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dlq_id"].as_str().unwrap())
        .collect();
    assert_eq!(replayed, [dead[1].as_str(), dead[2].as_str()]);
    assert_eq!(report["replayed"][0]["replay_count"], 1);
    let back = ns.run(m.read_messages("g", Some(10), None)).unwrap();
    assert_eq!(back.len(), 3);
    assert!(
        back.iter()
            .all(|b| b.replay_count == 1 && b.retry_count == 0)
    );
    ns.cmd()
        .args(["dlq", "replay", &dead[0], "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("not_found"));

    // Dead-lettered without a group: only with a target group.
    let loose = ns
        .run(async {
            m.send_message("s", json!({"why": "loose"}), None).await?;
            let msg = m.read_messages("g", Some(1), None).await?.remove(0);
            m.acknowledge(&msg, "g").await?;
            m.send_to_dlq(&msg, "manual", None).await
        })
        .unwrap();
    ns.cmd()
        .args(["dlq", "replay", &loose])
        .assert()
        .success()
        .stdout(predicate::str::contains("give a target group"));
    ns.cmd()
        .args(["dlq", "replay", &loose, "--target-group", "g"])
        .assert()
        .success()
        .stdout(predicate::str::contains("replayed 1"));
}

#[test]
fn dlq_purge_by_id_filter_and_age() {
    let ns = Ns::new("dlq-purge");
    let m = ns.manager("w");
    ns.group(&m, "g", &["s"]);
    let dead = dead_letter(&ns, &m, &["timeout", "crash", "crash again"]);

    let out = ns.cmd().args(["dlq", "purge", "--all"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("add --yes"));
    let plan = json(
        &ns.cmd()
            .args(["dlq", "purge", "--reason", "crash", "--dry-run", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(plan["would_remove"].as_array().unwrap().len(), 2);
    assert_eq!(plan["removed"], json!([]));

    ns.cmd()
        .args(["dlq", "purge", "--older-than", "1h", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("removed 0"));
    let one = json(
        &ns.cmd()
            .args(["dlq", "purge", &dead[0], "1-0", "--yes", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(one["removed"][0]["dlq_id"], dead[0].as_str());
    assert_eq!(one["removed"][0]["reason"], "timeout");
    assert_eq!(one["not_found"], json!(["1-0"]));
    ns.cmd()
        .args(["dlq", "purge", "--reason", "crash", "--yes"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("removed 2").and(predicate::str::contains(dead[2].as_str())),
        );
    let left = json(&ns.cmd().args(["dlq", "stats", "--json"]).output().unwrap());
    assert_eq!(left["total"], 0);
}
