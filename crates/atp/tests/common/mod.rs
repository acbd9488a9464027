//! Shared by the daemon tests: real `atp worker` processes on a test
//! database, and waits with a deadline.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atp_core::{DaemonId, Status, Store, TaskFilter, TaskRef};
use atp_store::testing::TestDb;

pub const ATP: &str = env!("CARGO_BIN_EXE_atp");

/// A daemon process; killed (SIGKILL) if still running when dropped.
pub struct Worker {
    pub child: Child,
}

impl Worker {
    /// `atp worker` with short intervals, on `db`, plus `extra` arguments.
    pub fn spawn(db: &impl TestDb, extra: &[&str]) -> Worker {
        let log = std::env::var("ATP_TEST_WORKER_LOG").is_ok();
        let child = Command::new(ATP)
            .arg("worker")
            .args([
                "--poll-interval-ms",
                "20",
                "--heartbeat-secs",
                "0.3",
                "--dead-after-secs",
                "1.5",
                "--cleanup-interval-secs",
                "0.3",
            ])
            .args(extra)
            .envs(db.child_env())
            .env("ATP_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if log { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .expect("spawning atp worker");
        Worker { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).unwrap());
        nix::sys::signal::kill(pid, signal).expect("signalling the worker");
    }

    /// Waits for the process to exit, at most `limit`; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the worker") {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what`
/// after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The id under which the process `pid` registered itself.
pub async fn daemon_id_of<S: Store>(store: &S, pid: u32) -> DaemonId {
    wait_for(
        Duration::from_secs(30),
        "the daemon to register",
        || async {
            store
                .daemon_list()
                .await
                .unwrap()
                .into_iter()
                .find(|d| d.pid == pid)
                .map(|d| d.id)
        },
    )
    .await
}

/// Number of tasks in `status`.
pub async fn count<S: Store>(store: &S, status: Status) -> u64 {
    store.task_counts().await.unwrap().status(status)
}

/// Every task (up to 100,000).
pub async fn all_tasks<S: Store>(store: &S) -> Vec<atp_core::Task> {
    let mut out = Vec::new();
    let mut filter = TaskFilter {
        limit: 1_000,
        ..TaskFilter::default()
    };
    loop {
        let page = store.task_list(&filter).await.unwrap();
        out.extend(page.tasks);
        match page.next {
            Some(cursor) => filter.after = Some(cursor),
            None => return out,
        }
    }
}

/// The messages of a task's log, oldest first.
pub async fn log_messages<S: Store>(store: &S, task: impl Into<TaskRef>) -> Vec<String> {
    store
        .task_log(&task.into())
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("{}: {}", r.status, r.message))
        .collect()
}

/// An `atp serve` process; killed if still running when dropped.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// Starts `atp serve` on a free loopback port with `extra` arguments and
    /// waits for its "listening on" line.
    pub fn spawn(env: Vec<(String, String)>, extra: &[&str]) -> Server {
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then waits (10 s at most) for the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
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

/// GETs `url` and parses the JSON body (panics on failure: callers are tests).
pub async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}
