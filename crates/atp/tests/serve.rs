//! `atp serve` as a real process: it runs tasks, answers over HTTP with the
//! same objects `atp --json` prints, refuses to open itself to the network
//! without a token, and stops cleanly on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use atp_server::testing::get_json;
use atp_store::testing::{TestDb, eventually};
use common::{ATP, Server};
use serde_json::{Value, json};

/// Whether a daemon ran in the process that logged `lines`.
fn ran_a_daemon(lines: &[String]) -> bool {
    lines.iter().any(|l| l.contains("daemon started"))
}

/// A SQLite database in `dir` and the environment that points `atp` at it.
fn sqlite_env(dir: &tempfile::TempDir) -> Vec<(String, String)> {
    vec![(
        "ATP_DATABASE_URL".to_owned(),
        format!("sqlite://{}", dir.path().join("a.sqlite").display()),
    )]
}

/// `atp --json ARGS` on the database in `env`.
fn cli_json(env: &[(String, String)], args: &[&str]) -> Value {
    let out = Command::new(ATP)
        .arg("--json")
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn serve_runs_tasks_and_answers_like_the_cli(db: impl TestDb) {
    let env = db.child_env();
    let mut server = Server::spawn_logged(env.clone(), &["--concurrency", "2"]);
    let http = reqwest::Client::new();
    let r = http
        .put(server.url("/api/v1/types/Sum"))
        .json(&json!({"handler": "builtin:sum"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(server.url("/api/v1/tasks"))
        .json(&json!({"type": "Sum", "identifier": "job/1", "input": [1, 2, 3]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = server.url(r.headers()["location"].to_str().unwrap());
    let task: Value = eventually(Duration::from_secs(30), "the task to finish", || async {
        let (_, t) = get_json(&http, &location).await;
        (t["status"] == "FINISHED").then_some(t)
    })
    .await;
    assert_eq!(task, cli_json(&env, &["status", "Sum", "job/1"]));
    let (_, log) = get_json(&http, &format!("{location}/log")).await;
    assert_eq!(log, cli_json(&env, &["log", "Sum", "job/1"]));
    let (_, types) = get_json(&http, &server.url("/api/v1/types")).await;
    assert_eq!(types, cli_json(&env, &["type", "list"]));
    let (_, stats) = get_json(&http, &server.url("/api/v1/stats")).await;
    assert_eq!(stats, cli_json(&env, &["stats"]));
    assert_eq!(stats["daemons"], 1, "serve runs a daemon");
    let body = http
        .get(format!("{location}/response"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.trim(), "6");

    assert_eq!(
        server.terminate(Duration::from_secs(10)).await,
        0,
        "SIGTERM stops it cleanly"
    );
    assert_eq!(cli_json(&env, &["stats"])["daemons"], 0, "deregistered");
    let log = server.log.as_mut().unwrap();
    assert!(ran_a_daemon(log.until_end(Duration::from_secs(5))));
}

/// `--no-daemon`: the API takes tasks, nothing in this process runs them.
async fn no_daemon_serves_without_running_tasks(db: impl TestDb) {
    let env = db.child_env();
    let mut server = Server::spawn_logged(env.clone(), &["--no-daemon"]);
    let http = reqwest::Client::new();
    http.put(server.url("/api/v1/types/Sum"))
        .json(&json!({"handler": "builtin:sum"}))
        .send()
        .await
        .unwrap();
    let r = http
        .post(server.url("/api/v1/tasks"))
        .json(&json!({"type": "Sum", "identifier": "j", "input": [1]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A daemon would have said so from its start to its stop: the whole
    // log, once the process has exited, tells.
    assert_eq!(server.terminate(Duration::from_secs(10)).await, 0);
    let log = server
        .log
        .as_mut()
        .unwrap()
        .until_end(Duration::from_secs(5));
    assert!(!ran_a_daemon(log), "{log:#?}");
    assert_eq!(
        cli_json(&env, &["status", "Sum", "j"])["status"],
        "ACCEPTED"
    );
    assert_eq!(
        cli_json(&env, &["log", "Sum", "j"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(cli_json(&env, &["stats"])["daemons"], 0);
}

async fn two_servers_share_one_database(db: impl TestDb) {
    let env = db.child_env();
    let a = Server::spawn(env.clone(), &["--concurrency", "2"]);
    let b = Server::spawn(env.clone(), &["--concurrency", "2"]);
    let http = reqwest::Client::new();
    http.put(a.url("/api/v1/types/Sum"))
        .json(&json!({"handler": "builtin:sum"}))
        .send()
        .await
        .unwrap();
    // Enqueued through either server, run by either daemon, seen by both.
    for i in 0..20 {
        let server = if i % 2 == 0 { &a } else { &b };
        let r = http
            .post(server.url("/api/v1/tasks"))
            .json(&json!({"type": "Sum", "identifier": format!("t{i}"), "input": [i, 1]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = http
        .post(b.url("/api/v1/tasks"))
        .json(&json!({"type": "Sum", "identifier": "t0", "input": [0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        409,
        "a duplicate is refused by the other server too"
    );
    for server in [&a, &b] {
        let stats: Value = eventually(Duration::from_secs(30), "all 20 to finish", || async {
            let (_, stats) = get_json(&http, &server.url("/api/v1/stats")).await;
            (stats["by_status"]["FINISHED"] == 20).then_some(stats)
        })
        .await;
        assert_eq!(stats["daemons"], 2, "{stats}");
    }
    for i in 0..20 {
        let (_, log) = get_json(&http, &a.url(&format!("/api/v1/tasks/Sum/t{i}/log"))).await;
        let runs = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "RUNNING")
            .count();
        assert_eq!(runs, 1, "t{i} ran exactly once: {log}");
    }
}

#[tokio::test]
async fn an_open_address_needs_a_token_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.sqlite").display());
    let out = Command::new(ATP)
        .args(["--database", &url, "serve", "--listen", "0.0.0.0:0"])
        .env_remove("ATP_TOKENS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--token") && err.contains("--insecure"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    // With a token it starts, and only the token's holder gets in (asked
    // over loopback: tests send traffic to this machine only).
    let env = vec![("ATP_DATABASE_URL".to_owned(), url)];
    let mut server = Server::spawn(env, &["--listen", "0.0.0.0:0", "--token", "t0k"]);
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let stats = format!("http://127.0.0.1:{port}/api/v1/stats");
    let http = reqwest::Client::new();
    assert_eq!(http.get(&stats).send().await.unwrap().status(), 401);
    let r = http.get(&stats).bearer_auth("t0k").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(server.terminate(Duration::from_secs(10)).await, 0);
}

/// An open dashboard tab does not hold up a graceful stop: with its event
/// stream open and still being read, SIGTERM ends `atp serve` at once
/// (well before the stream's own lifetime), and the stream with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_event_stream_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(sqlite_env(&dir), &[]);
    let http = reqwest::Client::new();
    let mut events = http.get(server.url("/events")).send().await.unwrap();
    assert_eq!(events.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), events.chunk())
        .await
        .expect("the first event within 5 s")
        .unwrap();
    assert!(first.is_some(), "the stream is open");
    // Go on reading, as a browser does, until the server ends the stream.
    let reading = tokio::spawn(async move { while let Ok(Some(_)) = events.chunk().await {} });
    let limit = atp_server::html::EVENTS_LIFETIME / 4;
    assert_eq!(server.terminate(limit).await, 0);
    tokio::time::timeout(limit, reading)
        .await
        .expect("the stream ended")
        .unwrap();
}

atp_store::per_engine_tests!(
    serve_runs_tasks_and_answers_like_the_cli,
    two_servers_share_one_database,
    no_daemon_serves_without_running_tasks,
);

#[tokio::test]
async fn no_exec_leaves_external_programs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let env = sqlite_env(&dir);
    let server = Server::spawn(env.clone(), &["--no-exec"]);
    let http = reqwest::Client::new();
    let touch = format!("exec:touch {}", marker.display());
    for (name, handler) in [("Touch", touch.as_str()), ("Sum", "builtin:sum")] {
        http.put(server.url(&format!("/api/v1/types/{name}")))
            .json(&json!({"handler": handler}))
            .send()
            .await
            .unwrap();
        let r = http
            .post(server.url("/api/v1/tasks"))
            .json(&json!({"type": name, "identifier": "j", "input": [1]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    eventually(Duration::from_secs(30), "the built-in task", || async {
        (cli_json(&env, &["status", "Sum", "j"])["status"] == "FINISHED").then_some(())
    })
    .await;
    // Claims are first in, first out across types: a daemon that could run
    // the program would have taken Touch (enqueued first) before Sum.
    assert_eq!(
        cli_json(&env, &["status", "Touch", "j"])["status"],
        "ACCEPTED"
    );
    assert!(!marker.exists(), "the program did not run");
}
