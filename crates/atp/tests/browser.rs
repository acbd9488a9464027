//! Headless Chromium (Debian's `chromium`) drives the dashboard of a real
//! `atp serve`: the script `tests/browser/dashboard.mjs` (playwright-core,
//! pointed at the system browser, never a downloaded one) loads it,
//! filters by status, opens a task, reads its log, re-enqueues it through
//! the confirmation, and checks that a message holding `<script>` is shown
//! as text.
//!
//! Needs `/usr/bin/chromium` (or `ATP_TEST_CHROMIUM`) and
//! `npm ci --prefix crates/atp/tests/browser`. Without them the test says
//! so and passes, unless `ATP_TEST_REQUIRE_BROWSER=1` (set by `.ci/run`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use atp_server::testing::get_json;
use atp_store::testing::eventually;
use common::Server;
use serde_json::json;

/// The browser and the script's folder, or why the test cannot run.
fn prerequisites() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("ATP_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!(
            "{} is missing (apt-get install chromium)",
            chromium.display()
        ));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "playwright-core is not installed (npm ci --prefix {})",
            dir.display()
        ));
    }
    Ok((chromium, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_chromium() {
    let (chromium, dir) = match prerequisites() {
        Ok(found) => found,
        Err(why) if std::env::var("ATP_TEST_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("the browser test must run but {why}")
        }
        Err(why) => {
            eprintln!("skipping the browser test: {why}");
            return;
        }
    };
    let db = tempfile::tempdir().unwrap();
    let env = vec![(
        "ATP_DATABASE_URL".to_owned(),
        format!("sqlite://{}", db.path().join("browser.sqlite").display()),
    )];
    let server = Server::spawn(env, &["--concurrency", "2"]);
    let http = reqwest::Client::new();
    let put = |name: &str, handler: &str| {
        http.put(server.url(&format!("/api/v1/types/{name}")))
            .json(&json!({"handler": handler}))
            .send()
    };
    put("Echo", "builtin:echo").await.unwrap();
    put("Fail", "builtin:fail").await.unwrap();
    put("Idle", "custom:nobody-runs-this").await.unwrap();
    let enqueue = |t: &str, id: &str, message: &str| {
        http.post(server.url("/api/v1/tasks"))
            .json(&json!({"type": t, "identifier": id, "input": {"id": id}, "message": message}))
            .send()
    };
    for i in 0..3 {
        enqueue("Echo", &format!("echo-{i}"), "made by the browser test")
            .await
            .unwrap();
    }
    enqueue("Fail", "fail-1", "made by the browser test")
        .await
        .unwrap();
    enqueue(
        "Idle",
        "xss-1",
        "<script>window.__atpXss = 1</script><b>bold?</b>",
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(30), "the tasks to settle", || async {
        let (_, stats) = get_json(&http, &server.url("/api/v1/stats")).await;
        (stats["by_status"]["FINISHED"] == 3 && stats["by_status"]["FAILED"] == 1).then_some(())
    })
    .await;

    let out = Command::new("node")
        .arg(dir.join("dashboard.mjs"))
        .arg(&server.base)
        .env("CHROMIUM", &chromium)
        .current_dir(&dir)
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser script failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("dashboard ok"), "{stdout}");

    // The click reached the server: the failed task was re-enqueued (and,
    // `builtin:fail` being what it is, failed again).
    let (_, log) = get_json(&http, &server.url("/api/v1/tasks/Fail/fail-1/log")).await;
    let accepted = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "ACCEPTED")
        .count();
    assert_eq!(
        accepted, 2,
        "enqueued, then re-enqueued from the page: {log}"
    );
}
