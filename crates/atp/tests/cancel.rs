//! `atp cancel` against `atp daemon` processes, on each engine: an `exec:`
//! program in another process is stopped (SIGTERM, then its group's
//! SIGKILL after the grace), nothing of its attempt is written, an ended
//! task is refused with exit 4, and re-enqueue brings cancelled tasks back.
//! On PostgreSQL the program's process group is gone within a second of
//! `atp cancel` returning (a notification, not a heartbeat).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use atp_core::{Handler, NewTask, Status, Store, TaskRef, TaskType};
use atp_store::conformance::{ident, type_name};
use atp_store::testing::{TestDb, eventually};
use common::{ATP, Lines, log_messages};
use serde_json::{Value, json};

/// `atp ARGS…` on `db`.
fn atp(db: &impl TestDb, args: &[&str]) -> Output {
    Command::new(ATP)
        .args(args)
        .envs(db.child_env())
        .stdin(Stdio::null())
        .output()
        .expect("running atp")
}

/// An `atp daemon` with heartbeats `heartbeat_secs` apart and the given
/// cancel grace; killed when dropped.
struct Daemon {
    child: std::process::Child,
    log: Lines,
}

impl Daemon {
    fn spawn(db: &impl TestDb, heartbeat_secs: &str, grace: &str) -> Daemon {
        let mut child = Command::new(ATP)
            .args([
                "daemon",
                "--poll-interval-ms",
                "20",
                "--heartbeat-secs",
                heartbeat_secs,
            ])
            .args(["--cancel-grace", grace])
            .envs(db.child_env())
            .env("ATP_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning atp daemon");
        let log = Lines::follow(child.stderr.take().unwrap());
        Daemon { child, log }
    }

    /// Stops it with SIGTERM and waits for a clean exit.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.log.wait_for("daemon stopped", Duration::from_secs(20));
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers `name` running `handler` (an hour's timeout).
async fn register<S: Store>(s: &S, name: &str, handler: &str) {
    let mut t = TaskType::new(type_name(name), Handler::new(handler).unwrap());
    t.timeout_secs = 3600.0;
    s.task_type_upsert(&t).await.unwrap();
}

/// Waits (10 s at most) for `path` to hold a pid.
async fn read_pid(path: &Path) -> i32 {
    eventually(Duration::from_secs(10), "the program's pid", || async {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
    .await
}

/// Whether any process of group `pgid` still runs (zombies, which run no
/// more and which a container's init may never reap, do not count).
fn group_alive(pgid: i32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None).is_ok();
    };
    procs.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp …": comm may hold spaces, so split
        // after its closing parenthesis.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

/// A shell program that records its pid (its process group's id), starts
/// a child in its group that ignores nothing, and then: with `trap`, cleans
/// up on SIGTERM (writes `cleaned`) and exits; without, ignores SIGTERM.
fn program(dir: &Path, trap: bool) -> String {
    // Temporary folders have plain names: no quoting needed inside the
    // command's quotes.
    let q = |name: &str| {
        let path = dir.join(name).to_str().unwrap().to_owned();
        assert!(
            path.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)),
            "{path}"
        );
        path
    };
    let on_term = if trap {
        format!("trap \"echo bye > {}; exit 0\" TERM", q("cleaned"))
    } else {
        "trap \"\" TERM".to_owned()
    };
    format!(
        "exec:sh -c '{on_term}; sleep 300 & echo $$ > {}; while :; do sleep 0.05; done'",
        q("pid")
    )
}

/// `atp cancel` stops a program running in a daemon process: one that
/// traps SIGTERM cleans up and exits, one that ignores it is killed with
/// its whole group after the grace; `--json` prints the task object; the
/// daemon writes nothing for either attempt, before or at its stop.
async fn atp_cancel_stops_exec_programs_in_a_daemon_process(db: impl TestDb) {
    let s = db.store();
    let dir = tempfile::tempdir().unwrap();
    let (traps, ignores) = (dir.path().join("traps"), dir.path().join("ignores"));
    std::fs::create_dir_all(&traps).unwrap();
    std::fs::create_dir_all(&ignores).unwrap();
    register(s, "traps", &program(&traps, true)).await;
    register(s, "ignores", &program(&ignores, false)).await;
    s.task_enqueue(NewTask::new(type_name("traps"), ident("t")))
        .await
        .unwrap();
    s.task_enqueue(NewTask::new(type_name("ignores"), ident("i")))
        .await
        .unwrap();
    // Heartbeats 0.3 s apart: on SQLite the cancel made by another process
    // reaches the daemon at its next heartbeat.
    let daemon = Daemon::spawn(&db, "0.3", "700ms");
    let trapping = read_pid(&traps.join("pid")).await;
    let ignoring = read_pid(&ignores.join("pid")).await;

    let out = atp(
        &db,
        &["--json", "cancel", "traps", "t", "--message", "wrong input"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["status"], "CANCELLED", "{task}");
    assert_eq!(task["status_code"], 7, "{task}");
    eventually(
        Duration::from_secs(10),
        "the trapping program to exit",
        || async { (!group_alive(trapping)).then_some(()) },
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(traps.join("cleaned")).unwrap(),
        "bye\n"
    );

    // The grace starts when the daemon hears of the cancel, which may be
    // before this process sees `atp cancel` exit: time it from the call.
    let asked = Instant::now();
    let out = atp(&db, &["cancel", "ignores", "i"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("CANCELLED"), "{said}");
    eventually(
        Duration::from_secs(10),
        "the ignoring group to be killed",
        || async { (!group_alive(ignoring)).then_some(()) },
    )
    .await;
    assert!(
        asked.elapsed() >= Duration::from_millis(700),
        "killed before the grace: {:?}",
        asked.elapsed()
    );
    assert!(!ignores.join("cleaned").exists());

    daemon.stop();
    for (ty, id, last) in [
        ("traps", "t", "CANCELLED: Cancelled: wrong input"),
        ("ignores", "i", "CANCELLED: Cancelled by an operator"),
    ] {
        let task = TaskRef::Key(type_name(ty), ident(id));
        assert_eq!(s.task_get(&task).await.unwrap().status, Status::Cancelled);
        let log = log_messages(s, task).await;
        assert_eq!(log.last().map(String::as_str), Some(last), "{log:?}");
    }
}

/// Cancelling an ended task exits 4 with one clear line; `atp wait` on a
/// cancelled task exits 8; `atp tasks --status cancelled` lists it;
/// re-enqueue brings it back, alone or with `--status cancelled`.
async fn atp_cancel_refuses_ended_tasks_and_reenqueue_brings_them_back(db: impl TestDb) {
    let s = db.store();
    register(s, "T", "custom:nobody-runs-this").await;
    for id in ["a", "b"] {
        s.task_enqueue(NewTask::new(type_name("T"), ident(id)))
            .await
            .unwrap();
    }
    assert!(atp(&db, &["cancel", "T", "a"]).status.success());
    assert!(atp(&db, &["cancel", "T", "b"]).status.success());
    let again = atp(&db, &["cancel", "T", "a"]);
    assert_eq!(again.status.code(), Some(4), "{again:?}");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("cannot cancel a task that is CANCELLED"),
        "{err}"
    );
    let missing = atp(&db, &["cancel", "T", "nope"]);
    assert_eq!(missing.status.code(), Some(3), "{missing:?}");
    let waited = atp(&db, &["wait", "T", "a", "--timeout", "10"]);
    assert_eq!(waited.status.code(), Some(8), "{waited:?}");

    let out = atp(&db, &["--json", "tasks", "--status", "cancelled"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let out = atp(&db, &["--json", "reenqueue", "T", "a"]);
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["status"], "ACCEPTED", "{task}");
    let out = atp(&db, &["reenqueue", "--status", "cancelled", "--type", "T"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(s.queue_size().await.unwrap(), 2);
    // Re-enqueueing a queued task is a conflict too (exit 4, as HTTP's 409).
    let queued = atp(&db, &["reenqueue", "T", "a"]);
    assert_eq!(queued.status.code(), Some(4), "{queued:?}");
}

/// An OGC client's dismiss of a running `exec:` job, through `atp serve`:
/// the program's whole group is gone (killed after the grace, as it
/// ignores SIGTERM) and the job reads `dismissed`, its task CANCELLED.
async fn an_ogc_dismiss_ends_a_running_exec_job_and_its_processes(db: impl TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::spawn(db.child_env(), &["--cancel-grace", "300ms"]);
    let http = reqwest::Client::new();
    let r = http
        .put(server.url("/api/v1/types/Program"))
        .json(&json!({"handler": program(dir.path(), false)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(server.url("/ogc/processes/Program/execution"))
        .header("Prefer", "respond-async")
        .json(&json!({"inputs": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job = r.headers()["location"].to_str().unwrap().to_owned();
    let job_id = job.rsplit('/').next().unwrap().to_owned();
    let pgid = read_pid(&dir.path().join("pid")).await;

    let r = http.delete(&job).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["status"], "dismissed", "{info}");
    eventually(
        Duration::from_secs(10),
        "the job's processes to be gone",
        || async { (!group_alive(pgid)).then_some(()) },
    )
    .await;
    let (_, info) = atp_server::testing::get_json(&http, &job).await;
    assert_eq!(info["status"], "dismissed", "{info}");
    let s = db.store();
    let task = s
        .task_get(&TaskRef::Key(type_name("Program"), ident(&job_id)))
        .await
        .unwrap();
    assert_eq!(task.status, Status::Cancelled);
}

atp_store::per_engine_tests! {
    an_ogc_dismiss_ends_a_running_exec_job_and_its_processes,
    atp_cancel_stops_exec_programs_in_a_daemon_process,
    atp_cancel_refuses_ended_tasks_and_reenqueue_brings_them_back,
}

/// On PostgreSQL, with heartbeats a minute apart (so only the notification
/// can tell the daemon in time): from `atp cancel` returning to the
/// program's whole process group being gone takes under a second, for a
/// program that exits on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_program_s_group_is_gone_within_a_second_of_the_cancel() {
    let Some(db) = atp_store::testing::PgDb::new().await else {
        return;
    };
    let s = db.store();
    let dir = tempfile::tempdir().unwrap();
    register(s, "traps", &program(dir.path(), true)).await;
    s.task_enqueue(NewTask::new(type_name("traps"), ident("t")))
        .await
        .unwrap();
    let _daemon = Daemon::spawn(&db, "60", "5s");
    let pgid = read_pid(&dir.path().join("pid")).await;
    assert!(group_alive(pgid));
    let out = atp(&db, &["cancel", "traps", "t"]);
    let returned = Instant::now();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = returned + Duration::from_secs(1);
    while group_alive(pgid) {
        assert!(
            Instant::now() < deadline,
            "the process group {pgid} still runs a second after the cancel returned"
        );
        // Polling /proc on a deadline (not waiting for a set time).
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    eprintln!(
        "process group gone {:?} after the cancel returned",
        returned.elapsed()
    );
}
