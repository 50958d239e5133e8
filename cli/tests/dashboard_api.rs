//! `xnai-streams dashboard`: every endpoint of its JSON API against a
//! seeded namespace of the test Redis, bad input included, and the rules
//! for writes (the flag, the token, loopback).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::Ns;
use common::dashboard::{
    CLAIM_IDLE, Dashboard, EVENTS, GROUP, SCRIPT, STREAM, STUCK, WORKER, eventually, get, post,
    request, seed,
};

const TOKEN: &str = "test-token-0123456789";

fn dlq_ids(page: &Value) -> Vec<&str> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect()
}

#[test]
fn reads_show_the_seeded_state() {
    let ns = Ns::new("dash-read");
    let seeded = seed(&ns);
    let d = Dashboard::start(&ns, &[]);
    ns.run(async {
        // The overview: the verdict and why, streams, groups, dead letters.
        let o = get(&d.url("/api/overview")).await;
        assert_eq!(o.status, 200, "{}", o.body);
        let o = o.json();
        assert_eq!(o["status"], "degraded", "claimable work: {o}");
        let problems = o["problems"].to_string();
        assert!(
            problems.contains("run claim_pending_messages"),
            "{problems}"
        );
        assert_eq!(o["thresholds"]["max_claimable"], 0);
        assert_eq!(o["writes"], false);
        assert_eq!(o["target"]["namespace"], ns.name.as_str());
        let stream = |name: &str| {
            o["streams"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(stream(STREAM)["length"], 7);
        assert_eq!(stream(STREAM)["groups"], json!([GROUP]));
        assert_eq!(stream(EVENTS)["length"], 2);
        assert!(stream(STREAM)["chart"]["series"][0]["label"] == "in");
        let g = &o["groups"][0];
        assert_eq!(g["group"], GROUP);
        assert_eq!(g["pending"], 2);
        assert_eq!(g["claimable"], 2);
        assert_eq!(g["scheduled_retries"], 1);
        assert_eq!(g["dead_letters"], 2);
        assert_eq!(g["consumers"], 2);
        assert_eq!(o["dlq"]["total"], 2);
        assert_eq!(o["dlq"]["by_reason"]["boom: bad input"], 1);

        // Rates come once the sampler has two looks.
        let rated = eventually(Duration::from_secs(10), || async {
            let o = get(&d.url("/api/groups")).await.json();
            o[0]["rates_per_min"]["out"].as_f64().map(|_| o)
        })
        .await;
        assert!(rated.is_some(), "a rate after two samples");

        // Health, streams, groups, as the commands print them.
        let h = get(&d.url("/api/health")).await.json();
        assert_eq!(h["status"], "degraded");
        assert_eq!(h["dlq_entries"], 2);
        let s = get(&d.url("/api/streams")).await.json();
        assert_eq!(s.as_array().unwrap().len(), 2);

        // A group: its consumers, the stuck one flagged, its pending entries.
        let g = get(&d.url(&format!("/api/groups/{GROUP}"))).await;
        assert_eq!(g.status, 200, "{}", g.body);
        let g = g.json();
        assert_eq!(g["config"]["claim_idle_ms"], CLAIM_IDLE.as_millis() as u64);
        assert_eq!(g["totals"]["pending"], 2);
        assert_eq!(g["totals"]["scheduled_retries"], 1);
        let consumer = |name: &str| {
            g["consumers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(consumer(STUCK)["lease"], "expired");
        assert_eq!(consumer(STUCK)["flags"], json!(["stuck"]));
        assert_eq!(consumer(STUCK)["pending"], 2);
        assert_eq!(consumer(WORKER)["lease"], "none");
        assert_eq!(consumer(WORKER)["flags"], json!([]));
        assert_eq!(g["pending"].as_array().unwrap().len(), 2);
        assert_eq!(g["pending"][0]["claimable"], true);
        let p = get(&d.url(&format!(
            "/api/groups/{GROUP}/pending?consumer={STUCK}&limit=1"
        )))
        .await
        .json();
        assert_eq!(p["entries"].as_array().unwrap().len(), 1);
        assert_eq!(p["entries"][0]["id"], seeded.stuck[0].as_str());

        // A message: pending with the stuck consumer; one done, with its
        // dead letter found by producer id; a dead letter by its id.
        let m = get(&d.url(&format!(
            "/api/message?stream={STREAM}&id={}",
            seeded.stuck[0]
        )))
        .await
        .json();
        assert_eq!(m["found_in"], "stream");
        assert_eq!(m["groups"][0]["state"], "pending");
        assert_eq!(m["groups"][0]["consumer"], STUCK);
        assert_eq!(m["groups"][0]["lease_expired"], true);
        assert_eq!(m["envelope"]["data"]["task"], 4);
        assert!(m["envelope"]["mid"].is_string());
        let acked = get(&d.url(&format!("/api/message?stream={STREAM}&id={}", seeded.acked)))
            .await
            .json();
        assert_eq!(acked["groups"][0]["state"], "done");
        let dead = get(&d.url(&format!(
            "/api/message?id={}&in=dead_letter",
            seeded.script_dlq
        )))
        .await
        .json();
        assert_eq!(dead["found_in"], "dead_letter");
        assert_eq!(dead["stream"], STREAM);
        assert_eq!(dead["envelope"]["data"]["note"], SCRIPT);
        assert_eq!(dead["dead_letter"]["group"], GROUP);
        assert_eq!(dead["deliveries"], 1);

        // The dead-letter queue: pages, filters, counts.
        let page = get(&d.url("/api/dlq")).await.json();
        assert_eq!(
            dlq_ids(&page),
            [seeded.plain_dlq.as_str(), seeded.script_dlq.as_str()]
        );
        assert_eq!(page["limit"], 50);
        let first = get(&d.url("/api/dlq?limit=1")).await.json();
        assert_eq!(dlq_ids(&first), [seeded.plain_dlq.as_str()]);
        let next = first["next"].as_str().unwrap();
        let second = get(&d.url(&format!("/api/dlq?limit=1&after={next}")))
            .await
            .json();
        assert_eq!(dlq_ids(&second), [seeded.script_dlq.as_str()]);
        let boom = get(&d.url("/api/dlq?reason=boom&group=workers&since=1h"))
            .await
            .json();
        assert_eq!(dlq_ids(&boom), [seeded.plain_dlq.as_str()]);
        let none = get(&d.url("/api/dlq?older_than=1h")).await.json();
        assert!(dlq_ids(&none).is_empty());
        let stats = get(&d.url("/api/dlq/stats?stream=jobs")).await.json();
        assert_eq!(stats["total"], 2);
        assert_eq!(stats["by_group"][GROUP], 2);

        // The probes.
        let ready = get(&d.url("/healthz")).await;
        assert_eq!(ready.status, 200, "{}", ready.body);
        assert_eq!(ready.json()["ready"], true);
        let metrics = eventually(Duration::from_secs(5), || async {
            let m = get(&d.url("/metrics")).await;
            m.body.contains("xnai_streams_group_pending").then_some(m)
        })
        .await
        .expect("gauges on /metrics");
        assert_eq!(metrics.status, 200);
        assert!(metrics.header("content-type").starts_with("text/plain"));
        assert!(
            metrics.body.contains(&format!(
                "xnai_streams_group_claimable{{stream=\"{STREAM}\",group=\"{GROUP}\"}} 2"
            )),
            "{}",
            metrics.body
        );

        // The page and its assets, with a strict policy.
        let page = get(&d.url("/")).await;
        assert_eq!(page.status, 200);
        assert!(page.header("content-type").starts_with("text/html"));
        let csp = page.header("content-security-policy");
        assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(page.header("x-content-type-options"), "nosniff");
        assert!(!page.body.contains("<script>"), "no inline script");
        assert!(!page.body.contains("https://"), "nothing from elsewhere");
        for (path, kind) in [
            ("/assets/app.js", "text/javascript"),
            ("/assets/app.css", "text/css"),
            ("/assets/vendor/uPlot.iife.min.js", "text/javascript"),
            ("/assets/vendor/uPlot.min.css", "text/css"),
            ("/assets/vendor/uPlot.LICENSE", "text/plain"),
        ] {
            let a = get(&d.url(path)).await;
            assert_eq!(a.status, 200, "{path}");
            assert!(a.header("content-type").starts_with(kind), "{path}");
        }
        assert_eq!(get(&d.url("/assets/nope.js")).await.status, 404);
        let api = get(&d.url("/api/overview")).await;
        assert_eq!(api.header("cache-control"), "no-store");
        assert!(api.header("content-type").starts_with("application/json"));
    });
}

#[test]
fn bad_input_gets_json_errors() {
    let ns = Ns::new("dash-bad");
    let seeded = seed(&ns);
    let d = Dashboard::start(&ns, &["--allow-writes", "--token", TOKEN]);
    ns.run(async {
        // Unknown group: 404 with a JSON error, on every path that names one.
        for path in [
            "/api/groups/nope",
            "/api/groups/nope/pending",
            "/api/groups/no%2Fsuch",
        ] {
            let r = get(&d.url(path)).await;
            assert_eq!(r.status, 404, "{path}: {}", r.body);
            assert_eq!(r.error_kind(), "not_found", "{path}");
        }
        for action in ["claim", "prune"] {
            let r = post(
                &d.url(&format!("/api/groups/nope/{action}")),
                Some(TOKEN),
                &json!({}),
            )
            .await;
            assert_eq!(r.status, 404, "{action}: {}", r.body);
        }
        let r = get(&d.url("/api/nothing-here")).await;
        assert_eq!((r.status, r.error_kind().as_str()), (404, "not_found"));

        // Malformed filters and parameters: 400, saying what.
        for query in [
            "since=yesterday",
            "until=soon",
            "older_than=7%20fortnights",
            "limit=abc",
            "limit=0",
            "limit=-5",
            "colour=blue",
            "reason=a&reason=b",
        ] {
            let r = get(&d.url(&format!("/api/dlq?{query}"))).await;
            assert_eq!(r.status, 400, "{query}: {}", r.body);
            assert_eq!(r.error_kind(), "bad_request", "{query}");
        }
        let r = get(&d.url("/api/dlq/stats?since=never")).await;
        assert_eq!(r.status, 400);
        let r = get(&d.url(&format!("/api/groups/{GROUP}/pending?idle=long"))).await;
        assert_eq!(r.status, 400);
        let r = get(&d.url("/api/overview?x=1")).await;
        assert_eq!(r.status, 400);

        // Huge pages are cut to 500, not refused.
        for query in ["limit=100000", "limit=99999999999999999999999"] {
            let r = get(&d.url(&format!("/api/dlq?{query}"))).await;
            if query.len() > 20 {
                assert_eq!(r.status, 400, "beyond any number: {}", r.body);
                continue;
            }
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.json()["limit"], 500);
        }
        let r = get(&d.url(&format!("/api/groups/{GROUP}/pending?limit=100000"))).await;
        assert_eq!(r.json()["limit"], 500);

        // Messages: what is missing, malformed or not there.
        let r = get(&d.url("/api/message?id=1-0")).await;
        assert_eq!(r.status, 400, "stream required: {}", r.body);
        let r = get(&d.url(&format!("/api/message?stream={STREAM}"))).await;
        assert_eq!(r.status, 400, "id required");
        let r = get(&d.url(&format!("/api/message?stream={STREAM}&id=1-0&in=attic"))).await;
        assert_eq!(r.status, 400);
        let r = get(&d.url("/api/message?stream=bad%7Bname%7D&id=1-0")).await;
        assert_eq!(r.status, 400, "invalid stream name: {}", r.body);
        let r = get(&d.url(&format!("/api/message?stream={STREAM}&id=not-an-id"))).await;
        assert_eq!(r.status, 400, "malformed id: {}", r.body);
        let r = get(&d.url(&format!("/api/message?stream={STREAM}&id=1-0"))).await;
        assert_eq!((r.status, r.error_kind().as_str()), (404, "not_found"));
        let r = get(&d.url("/api/message?id=1-0&in=dead_letter")).await;
        assert_eq!(r.status, 404);

        // Bodies: malformed, unknown fields, nothing named, bulk without yes.
        let replay = d.url("/api/dlq/replay");
        let auth = format!("Bearer {TOKEN}");
        let headers = [("authorization", auth.as_str())];
        let r = request("POST", &replay, &headers, Some("{not json")).await;
        assert_eq!((r.status, r.error_kind().as_str()), (400, "bad_request"));
        for body in [
            json!({"idz": [seeded.plain_dlq]}),
            json!({}),
            json!({"all": true}),
            json!({"ids": [seeded.plain_dlq, seeded.script_dlq]}),
            json!({"ids": [seeded.plain_dlq], "all": true}),
            json!({"filter": {"since": "whenever"}, "dry_run": true}),
            json!({"filter": {"colour": "red"}, "dry_run": true}),
            json!({"ids": "1-0"}),
        ] {
            let r = post(&replay, Some(TOKEN), &body).await;
            assert_eq!(r.status, 400, "{body}: {}", r.body);
        }
        let r = post(
            &d.url("/api/dlq/purge"),
            Some(TOKEN),
            &json!({"all": true, "dry_run": true, "target_group": "g"}),
        )
        .await;
        assert_eq!(r.status, 400);
        let r = post(
            &d.url(&format!("/api/groups/{GROUP}/claim")),
            Some(TOKEN),
            &json!({"idle": "a while"}),
        )
        .await;
        assert_eq!(r.status, 400);
        let r = post(
            &d.url(&format!("/api/groups/{GROUP}/release")),
            Some(TOKEN),
            &json!({}),
        )
        .await;
        assert_eq!(r.status, 400, "consumer required");

        // Wrong methods, and a host that is not this machine.
        let r = get(&replay).await;
        assert_eq!(
            (r.status, r.error_kind().as_str()),
            (405, "method_not_allowed")
        );
        let r = request("POST", &d.url("/api/overview"), &[], Some("{}")).await;
        assert_eq!(r.status, 405);
        let r = request(
            "GET",
            &d.url("/api/overview"),
            &[("host", "evil.example:80")],
            None,
        )
        .await;
        assert_eq!((r.status, r.error_kind().as_str()), (403, "wrong_host"));
        assert!(!r.header("content-security-policy").is_empty());

        // Nothing was changed by any of it.
        let page = get(&d.url("/api/dlq")).await.json();
        assert_eq!(dlq_ids(&page).len(), 2);
    });
}

#[test]
fn writes_need_the_flag_and_the_token() {
    let ns = Ns::new("dash-auth");
    let seeded = seed(&ns);
    let one = json!({ "ids": [seeded.plain_dlq], "dry_run": true });
    {
        let read_only = Dashboard::start(&ns, &[]);
        ns.run(async {
            for token in [None, Some(TOKEN)] {
                let r = post(&read_only.url("/api/dlq/replay"), token, &one).await;
                assert_eq!(
                    (r.status, r.error_kind().as_str()),
                    (403, "read_only"),
                    "{}",
                    r.body
                );
            }
        });
    }
    // On loopback without --token, the dashboard makes one up and prints it.
    let d = Dashboard::start(&ns, &["--allow-writes"]);
    let made_up = d.printed_token.clone().expect("a printed token");
    assert_eq!(made_up.len(), 32);
    ns.run(async {
        let r = post(&d.url("/api/dlq/replay"), None, &one).await;
        assert_eq!((r.status, r.error_kind().as_str()), (401, "unauthorized"));
        assert!(r.header("www-authenticate").starts_with("Bearer"));
        let r = post(&d.url("/api/dlq/purge"), Some("wrong-token"), &one).await;
        assert_eq!(r.status, 401);
        let r = request(
            "POST",
            &d.url("/api/dlq/purge"),
            &[("authorization", &format!("Basic {made_up}"))],
            Some(&one.to_string()),
        )
        .await;
        assert_eq!(r.status, 401, "only Bearer");
        let r = post(&d.url("/api/dlq/replay"), Some(&made_up), &one).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["would_replay"].as_array().unwrap().len(), 1);
        // Reads need no token.
        assert_eq!(get(&d.url("/api/overview")).await.status, 200);
    });
    drop(d);

    // Off loopback, writes without a token are refused before anything starts.
    let out = ns
        .cmd()
        .args(["dashboard", "--addr", "0.0.0.0:0", "--allow-writes"])
        .env_remove("XNAI_DASHBOARD_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = common::one_error_line(&out);
    assert!(err.contains("without a token"), "{err}");
    // A token from the environment is taken, and never printed.
    let out = ns
        .cmd()
        .args([
            "dashboard",
            "--addr",
            "0.0.0.0:0",
            "--allow-writes",
            "--help",
        ])
        .env("XNAI_DASHBOARD_TOKEN", "env-secret-token")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("env-secret-token"));
}

#[test]
fn changes_go_through_the_manager() {
    let ns = Ns::new("dash-write");
    let seeded = seed(&ns);
    let d = Dashboard::start(&ns, &["--allow-writes", "--token", TOKEN]);
    let reader = ns.manager("agent-new");
    ns.run(async {
        // Replay one dead letter: dry run first, then for real; it goes
        // back to its group, and the queue holds one less.
        let replay = d.url("/api/dlq/replay");
        let plan = post(
            &replay,
            Some(TOKEN),
            &json!({"ids": [seeded.plain_dlq], "dry_run": true}),
        )
        .await
        .json();
        assert_eq!(plan["dry_run"], true);
        assert_eq!(plan["would_replay"][0]["group"], GROUP);
        let done = post(&replay, Some(TOKEN), &json!({"ids": [seeded.plain_dlq]})).await;
        assert_eq!(done.status, 200, "{}", done.body);
        let done = done.json();
        assert_eq!(done["replayed"].as_array().unwrap().len(), 1);
        let again = post(&replay, Some(TOKEN), &json!({"ids": [seeded.plain_dlq]}))
            .await
            .json();
        assert!(
            again["replayed"].as_array().unwrap().is_empty(),
            "idempotent"
        );
        assert_eq!(again["skipped"][0]["reason"]["kind"], "not_found");
        let page = get(&d.url("/api/dlq")).await.json();
        assert_eq!(dlq_ids(&page), [seeded.script_dlq.as_str()]);
        let back = reader.read_messages(GROUP, Some(10), None).await.unwrap();
        let replayed = back
            .iter()
            .find(|m| m.data["task"] == "poison")
            .expect("the replayed message back in its group");
        assert_eq!(
            replayed.replayed_from.as_deref(),
            Some(seeded.plain_dlq.as_str())
        );
        reader.acknowledge_many(&back, GROUP).await.unwrap();

        // Purge by filter: a dry run counts, a bulk change needs yes.
        let purge = d.url("/api/dlq/purge");
        let filter = json!({"reason": "markup"});
        let plan = post(
            &purge,
            Some(TOKEN),
            &json!({"filter": filter, "dry_run": true}),
        )
        .await
        .json();
        assert_eq!(plan["would_remove"].as_array().unwrap().len(), 1);
        let r = post(&purge, Some(TOKEN), &json!({"filter": filter})).await;
        assert_eq!(r.status, 400, "bulk without yes");
        let r = post(&purge, Some(TOKEN), &json!({"filter": filter, "yes": true}))
            .await
            .json();
        assert_eq!(r["removed"][0]["dlq_id"], seeded.script_dlq.as_str());
        assert_eq!(get(&d.url("/api/dlq/stats")).await.json()["total"], 0);

        // Release the stuck consumer's work: a dry run lists it, the
        // release hands it back; repeating it hands back nothing more.
        let release = d.url(&format!("/api/groups/{GROUP}/release"));
        let plan = post(
            &release,
            Some(TOKEN),
            &json!({"consumer": STUCK, "dry_run": true}),
        )
        .await
        .json();
        assert_eq!(plan["would_release"], 2);
        let entries = plan["entries"].clone();
        let r = post(
            &release,
            Some(TOKEN),
            &json!({"consumer": STUCK, "entries": entries}),
        )
        .await
        .json();
        assert_eq!(r["released"], 2);
        let r = post(
            &release,
            Some(TOKEN),
            &json!({"consumer": STUCK, "entries": entries}),
        )
        .await
        .json();
        assert_eq!(r["released"], 0, "the same delivery is handed back once");
        let r = post(&release, Some(TOKEN), &json!({"consumer": STUCK}))
            .await
            .json();
        assert_eq!(r["released"], 0, "nothing left that was not handed back");

        // Claim: the handed-back entries are claimed and handed back for
        // the group's workers, who can claim them at once.
        let claim = d.url(&format!("/api/groups/{GROUP}/claim"));
        let r = post(&claim, Some(TOKEN), &json!({})).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = r.json();
        assert_eq!(r["handed_back"], 2);
        let ids: Vec<&str> = r["claimed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, seeded.stuck);
        let taken = reader
            .claim_pending_messages(GROUP, Some(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(taken.len(), 2);

        // Prune: consumers holding nothing go, the others stay.
        let prune = d.url(&format!("/api/groups/{GROUP}/prune"));
        let plan = post(
            &prune,
            Some(TOKEN),
            &json!({"idle": "1ms", "dry_run": true}),
        )
        .await
        .json();
        let would: Vec<&str> = plan["would_remove"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(would.contains(&WORKER) && would.contains(&STUCK), "{plan}");
        assert!(!would.contains(&"agent-new"), "it holds entries: {plan}");
        let r = post(&prune, Some(TOKEN), &json!({"idle": "1ms"}))
            .await
            .json();
        assert!(
            r["removed"].as_array().unwrap().iter().any(|v| v == WORKER),
            "{r}"
        );
        let g = get(&d.url(&format!("/api/groups/{GROUP}"))).await.json();
        let names: Vec<&str> = g["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"agent-new") && !names.contains(&WORKER),
            "{names:?}"
        );
    });
}
