//! The dashboard's page in a real browser: headless Chromium, driven
//! through chromedriver (WebDriver, with fantoccini), against a seeded
//! namespace of the test Redis. It checks what an operator sees and does:
//! the overview's counts, a stuck consumer flagged, a `<script>` payload
//! shown as text, a change refused without the token, and a dead letter
//! replayed from the page back to its group. Screenshots go to
//! `<target>/dashboard-screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install -y
//! chromium chromium-driver`); without them the test fails and says so.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use common::Ns;
use common::dashboard::{Dashboard, GROUP, SCRIPT, STREAM, STUCK, Seeded, WORKER, get, seed};

const TOKEN: &str = "browser-test-token-42";

/// How long the page gets to show something.
const PATIENCE: Duration = Duration::from_secs(15);

/// A program the test needs: `$env`, else the Debian path, else on `PATH`.
fn program(env: &str, debian: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if Path::new(debian).exists() {
        return PathBuf::from(debian);
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }) {
        return found;
    }
    panic!(
        "the dashboard's browser test needs {name} and cannot find it (not at {debian}, not on PATH, \
         {env} not set). Install headless Chromium and its WebDriver: \
         `apt-get install -y chromium chromium-driver` (Debian), or set {env} to the program's path."
    );
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(path: &Path) -> Self {
        let port = streams_redis::testing::free_port().unwrap();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `<target>/dashboard-screenshots`: the workspace's target directory
/// (`CARGO_TARGET_DIR` when set).
fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|t| !t.is_empty())
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        );
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text of the first element `css` finds, once `ok` holds for it.
async fn wait_text(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut last = None;
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await {
            if let Ok(text) = el.text().await {
                if ok(&text) {
                    return text;
                }
                last = Some(text);
            }
        }
        assert!(
            Instant::now() < deadline,
            "`{css}` never showed what was expected (last: {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for a `confirm()` dialog and accepts it; returns its text.
async fn accept_confirm(c: &Client) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = c.get_alert_text().await {
            c.accept_alert().await.unwrap();
            return text;
        }
        assert!(Instant::now() < deadline, "no confirmation was asked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn shoot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// What the operator sees and does, page by page.
async fn walk(c: Client, base: String, seeded: Seeded, dir: PathBuf) {
    // The overview: the verdict, the streams, the group, the dead letters.
    c.goto(&format!("{base}/#/")).await.unwrap();
    wait_text(&c, "#health-status", |t| t == "degraded").await;
    wait_text(
        &c,
        &format!("tr[data-stream=\"{STREAM}\"] td.length"),
        |t| t == "7",
    )
    .await;
    wait_text(&c, "tr[data-stream=\"events\"] td.length", |t| t == "2").await;
    wait_text(&c, &format!("tr[data-group=\"{GROUP}\"] td.pending"), |t| {
        t == "2"
    })
    .await;
    wait_text(
        &c,
        &format!("tr[data-group=\"{GROUP}\"] td.claimable"),
        |t| t == "2",
    )
    .await;
    wait_text(&c, "#dlq-total", |t| t == "2").await;
    let problems = wait_text(&c, "ul.problems", |t| !t.is_empty()).await;
    assert!(
        problems.contains("run claim_pending_messages"),
        "{problems}"
    );
    // Let the charts get a few points.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    shoot(&c, &dir, "overview.png").await;

    // The group: the stuck consumer is flagged, the other is not.
    c.goto(&format!("{base}/#/group/{GROUP}")).await.unwrap();
    wait_text(
        &c,
        &format!("tr[data-consumer=\"{STUCK}\"] .flag.stuck"),
        |t| t.eq_ignore_ascii_case("stuck"),
    )
    .await;
    wait_text(
        &c,
        &format!("tr[data-consumer=\"{STUCK}\"] td.lease"),
        |t| t.contains("expired"),
    )
    .await;
    let worker = wait_text(&c, &format!("tr[data-consumer=\"{WORKER}\"]"), |_| true).await;
    assert!(!worker.to_lowercase().contains("stuck"), "{worker}");
    shoot(&c, &dir, "group.png").await;

    // A payload with markup is shown as text and never runs.
    c.goto(&format!(
        "{base}/#/dead-letter/{}/{STREAM}",
        seeded.script_dlq
    ))
    .await
    .unwrap();
    let shown = wait_text(&c, "#data", |t| t.contains("<script>")).await;
    let expected = serde_json::to_string(SCRIPT).unwrap();
    assert!(shown.contains(&expected), "{shown}");
    let reason = wait_text(&c, "#where li.dead", |t| t.contains("markup")).await;
    assert!(
        reason.contains("<b>markup</b>"),
        "the reason as text: {reason}"
    );
    let ran: Value = c
        .execute(
            "return [typeof window.__xss, document.querySelectorAll('#view script, #view img').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        ran,
        json!(["undefined", 0]),
        "nothing from the payload ran or became an element"
    );
    shoot(&c, &dir, "message.png").await;

    // A change without the token is refused, and nothing is asked.
    c.goto(&format!("{base}/#/dlq")).await.unwrap();
    wait_text(&c, "#dlq-count", |t| t == "2").await;
    c.execute("document.getElementById('token').value = '';", vec![])
        .await
        .unwrap();
    c.find(Locator::Css("#purge-matching"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refused = wait_text(&c, "#notice", |t| t.contains("unauthorized")).await;
    assert!(refused.contains("Purge refused"), "{refused}");
    assert!(c.get_alert_text().await.is_err(), "no confirmation asked");
    wait_text(&c, "#dlq-count", |t| t == "2").await;

    // Replay from the page, with the token: a dry run, a confirmation, the
    // move; the queue holds one less.
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    c.find(Locator::Css(&format!(
        "tr[data-dlq-id=\"{}\"] button.replay",
        seeded.plain_dlq
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let asked = accept_confirm(&c).await;
    assert!(
        asked.contains(&seeded.plain_dlq) && asked.contains(GROUP),
        "{asked}"
    );
    wait_text(&c, "#notice", |t| t.contains("Replayed 1")).await;
    wait_text(&c, "#dlq-count", |t| t == "1").await;
    assert!(
        c.find(Locator::Css(&format!(
            "tr[data-dlq-id=\"{}\"]",
            seeded.plain_dlq
        )))
        .await
        .is_err(),
        "the replayed entry left the list"
    );
    shoot(&c, &dir, "dlq-after-replay.png").await;

    // The group again and the overview: no errors of the page all along
    // (hash changes keep the document, so this covers the whole walk).
    c.goto(&format!("{base}/#/group/{GROUP}")).await.unwrap();
    wait_text(&c, "#consumers-table", |_| true).await;
    c.goto(&format!("{base}/#/")).await.unwrap();
    wait_text(&c, "#dlq-total", |t| t == "1").await;
    let errors: Value = c
        .execute("return window.__dashboardErrors;", vec![])
        .await
        .unwrap();
    assert_eq!(errors, json!([]), "the page ran without errors");
}

#[test]
fn the_page_shows_the_state_and_replays_a_dead_letter() {
    let started = Instant::now();
    let chromium = program("CHROME_BIN", "/usr/bin/chromium", "chromium");
    let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver");
    let dir = screenshots();
    let ns = Ns::new("dash-browser");
    let seeded = seed(&ns);
    let plain = seeded.plain_dlq.clone();
    let d = Dashboard::start(&ns, &["--allow-writes", "--token", TOKEN]);
    let driver = Driver::start(&chromedriver);
    let base = d.base.clone();
    let reader = ns.manager("agent-new");
    ns.run(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"],
            }),
        );
        // Dialogs wait for the test to answer them.
        caps.insert("unhandledPromptBehavior".to_owned(), json!("ignore"));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| panic!("cannot start Chromium through chromedriver: {e}"));
        // The walk runs as a task, so the browser is closed even when an
        // assertion fails.
        let walked = tokio::spawn(walk(client.clone(), base, seeded, dir.clone())).await;
        let _ = client.close().await;
        if let Err(e) = walked {
            std::panic::resume_unwind(e.into_panic());
        }
        // The replayed message is back in its group, for its next reader.
        let back = reader.read_messages(GROUP, Some(10), None).await.unwrap();
        assert!(
            back.iter()
                .any(|m| m.replayed_from.as_deref() == Some(plain.as_str())),
            "{back:?}"
        );
        assert_eq!(
            get(&d.url("/api/dlq/stats")).await.json()["total"],
            1,
            "one dead letter left"
        );
    });
    drop(driver);
    for shot in [
        "overview.png",
        "group.png",
        "message.png",
        "dlq-after-replay.png",
    ] {
        let size = std::fs::metadata(dir.join(shot)).unwrap().len();
        assert!(size > 10_000, "{shot} is a real screenshot ({size} bytes)");
    }
    eprintln!(
        "screenshots in {} ({:.1} s)",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
}
