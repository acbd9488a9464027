//! Shared by the tests that run the real binary: `atp daemon` and
//! `atp serve` processes on a test database, their stderr read line by
//! line, and waits with a deadline (`atp_store::testing::eventually`).

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use atp_core::{DaemonId, Status, Store, TaskFilter, TaskRef};
use atp_store::testing::{TestDb, eventually};

pub const ATP: &str = env!("CARGO_BIN_EXE_atp");

/// Whether the processes' logs should also reach the test's stderr.
fn show_logs() -> bool {
    std::env::var("ATP_TEST_SHOW_LOGS").is_ok()
}

/// A process's stderr, read on a thread of its own, so that a test can wait
/// for a line (the process saying it has got somewhere) instead of sleeping.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Lines {
    /// Follows `stream` until it ends (the process exited).
    pub fn follow(stream: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        let show = show_logs();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if show {
                    eprintln!("{line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`, at most `limit`; returns it.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no line with {needle:?} ({e:?}); got {:#?}", self.seen),
            }
        }
    }

    /// Every line up to the end of the stream, which must come within
    /// `limit` (the process has exited or is about to).
    pub fn until_end(&mut self, limit: Duration) -> &[String] {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return &self.seen,
                Err(e) => panic!("stderr did not end ({e:?}); got {:#?}", self.seen),
            }
        }
    }
}

/// Waits for `child` to exit, at most `limit`; its exit code (-1 for a
/// signal). Panics naming `what` when it does not.
async fn exit_code(child: &mut Child, limit: Duration, what: &str) -> i32 {
    eventually(limit, &format!("{what} to exit"), || {
        let code = child
            .try_wait()
            .expect("waiting for the child")
            .map(|status| status.code().unwrap_or(-1));
        async move { code }
    })
    .await
}

/// A daemon process; killed (SIGKILL) if still running when dropped.
pub struct DaemonProcess {
    pub child: Child,
    /// Its stderr, when spawned with [`DaemonProcess::spawn_logged`].
    pub log: Option<Lines>,
}

impl DaemonProcess {
    /// `atp daemon` with short intervals, on `db`, plus `extra` arguments.
    pub fn spawn(db: &impl TestDb, extra: &[&str]) -> DaemonProcess {
        let stderr = if show_logs() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        Self::start(db, extra, stderr)
    }

    /// [`DaemonProcess::spawn`] with its stderr in [`DaemonProcess::log`].
    pub fn spawn_logged(db: &impl TestDb, extra: &[&str]) -> DaemonProcess {
        let mut daemon = Self::start(db, extra, Stdio::piped());
        daemon.log = Some(Lines::follow(daemon.child.stderr.take().unwrap()));
        daemon
    }

    /// A daemon with the product's default heartbeat, silence thresholds
    /// and clean-up interval (only `extra` added): for tests of what those
    /// defaults promise.
    pub fn spawn_with_default_timing(db: &impl TestDb, extra: &[&str]) -> DaemonProcess {
        let stderr = if show_logs() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        Self::start_with(db, &[], extra, stderr)
    }

    fn start(db: &impl TestDb, extra: &[&str], stderr: Stdio) -> DaemonProcess {
        let fast = [
            "--poll-interval-ms",
            "20",
            "--heartbeat-secs",
            "0.3",
            "--dead-after-secs",
            "1.5",
            "--cleanup-interval-secs",
            "0.3",
        ];
        Self::start_with(db, &fast, extra, stderr)
    }

    fn start_with(
        db: &impl TestDb,
        timing: &[&str],
        extra: &[&str],
        stderr: Stdio,
    ) -> DaemonProcess {
        let child = Command::new(ATP)
            .arg("daemon")
            .args(timing)
            .args(extra)
            .envs(db.child_env())
            .env("ATP_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawning atp daemon");
        DaemonProcess { child, log: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).unwrap());
        nix::sys::signal::kill(pid, signal).expect("signalling the daemon");
    }

    /// Waits for the process to exit, at most `limit`; its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> i32 {
        exit_code(&mut self.child, limit, "the daemon").await
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The id under which the process `pid` registered itself.
pub async fn daemon_id_of<S: Store>(store: &S, pid: u32) -> DaemonId {
    eventually(
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
    /// Its stderr, when spawned with [`Server::spawn_logged`].
    pub log: Option<Lines>,
}

impl Server {
    /// Starts `atp serve` on a free loopback port with `extra` arguments and
    /// waits for its "listening on" line.
    pub fn spawn(env: Vec<(String, String)>, extra: &[&str]) -> Server {
        let stderr = if show_logs() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        Self::start(env, extra, stderr)
    }

    /// [`Server::spawn`] with its stderr (at level info) in [`Server::log`].
    pub fn spawn_logged(mut env: Vec<(String, String)>, extra: &[&str]) -> Server {
        env.push(("ATP_LOG".into(), "info".into()));
        let mut server = Self::start(env, extra, Stdio::piped());
        server.log = Some(Lines::follow(server.child.stderr.take().unwrap()));
        server
    }

    fn start(env: Vec<(String, String)>, extra: &[&str], stderr: Stdio) -> Server {
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
            .stderr(stderr)
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
        Server {
            child,
            base,
            log: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then waits (at most `limit`) for the exit code.
    pub async fn terminate(&mut self, limit: Duration) -> i32 {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        exit_code(&mut self.child, limit, "atp serve").await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
