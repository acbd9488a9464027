//! `atp serve` as a real process: it runs tasks, answers over HTTP with the
//! same objects `atp --json` prints, refuses to open itself to the network
//! without a token, and stops cleanly on SIGTERM.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use atp_store::testing::TestDb;
use common::{ATP, wait_for};
use serde_json::{Value, json};

/// An `atp serve` process; killed if still running when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts `atp serve` on a free loopback port with `extra` arguments and
    /// waits for its "listening on" line.
    fn spawn(env: Vec<(String, String)>, extra: &[&str]) -> Server {
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(ATP)
            .args(["serve", "--poll-interval-ms", "20"])
            .args(listen)
            .args(extra)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning atp serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the address line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn terminate(&mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        for _ in 0..500 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let mut server = Server::spawn(env.clone(), &["--concurrency", "2"]);
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
    let task: Value = wait_for(Duration::from_secs(30), "the task to finish", || async {
        let t: Value = http
            .get(&location)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (t["status"] == "FINISHED").then_some(t)
    })
    .await;
    assert_eq!(task, cli_json(&env, &["status", "Sum", "job/1"]));
    let log: Value = http
        .get(format!("{location}/log"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log, cli_json(&env, &["log", "Sum", "job/1"]));
    let types: Value = http
        .get(server.url("/api/v1/types"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(types, cli_json(&env, &["type", "list"]));
    let stats: Value = http
        .get(server.url("/api/v1/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

    assert_eq!(server.terminate(), Some(0), "SIGTERM stops it cleanly");
    assert_eq!(cli_json(&env, &["stats"])["daemons"], 0, "deregistered");
}

async fn no_workers_serves_without_running_tasks(db: impl TestDb) {
    let env = db.child_env();
    let server = Server::spawn(env.clone(), &["--no-workers"]);
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cli_json(&env, &["status", "Sum", "j"])["status"],
        "ACCEPTED"
    );
    assert_eq!(cli_json(&env, &["stats"])["daemons"], 0);
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
    assert_eq!(server.terminate(), Some(0));
}

macro_rules! serve_tests {
    ($db:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn serve_runs_tasks_and_answers_like_the_cli() {
            let Some(db) = $db else { return };
            super::serve_runs_tasks_and_answers_like_the_cli(db).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn no_workers_serves_without_running_tasks() {
            let Some(db) = $db else { return };
            super::no_workers_serves_without_running_tasks(db).await;
        }
    };
}

mod sqlite {
    serve_tests!(atp_store::testing::sqlite_db().await);
}

mod postgres {
    serve_tests!(atp_store::testing::postgres_db().await);
}
