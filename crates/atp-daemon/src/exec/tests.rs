//! `exec:` end to end: real programs on a real (in-memory) store.

use std::path::Path;
use std::sync::Arc;

use atp_core::store::ClaimParams;
use atp_core::{NewTask, Status, Store, TaskId, TaskRef};
use atp_store::conformance::{DAEMON_A, ident, register, task_type};
use atp_store::sqlite::SqliteStore;
use atp_store::testing::eventually;
use nix::errno::Errno;
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::context::AttemptStore;

/// A running task with its context, on a fresh in-memory store.
struct Running {
    store: SqliteStore,
    ctx: TaskContext,
    cancel: CancellationToken,
    id: TaskId,
}

impl Running {
    async fn new(input: Value) -> Self {
        Self::with_grace(input, Duration::from_secs(5)).await
    }

    /// With `grace` as the daemon's cancel grace.
    async fn with_grace(input: Value, grace: Duration) -> Self {
        let store = SqliteStore::open_memory(Default::default())
            .await
            .expect("opening a store");
        let t = register(&store, task_type("exec-test")).await;
        store
            .task_enqueue(NewTask::new(t, ident("job 1")).with_input(input))
            .await
            .expect("enqueueing");
        let claimed = store
            .task_claim(&ClaimParams::new(DAEMON_A, 1))
            .await
            .expect("claiming");
        let started = store
            .task_start_many(&[claimed[0].attempt])
            .await
            .expect("starting")
            .pop()
            .expect("one result")
            .expect("started");
        let id = started.attempt.task;
        let cancel = CancellationToken::new();
        let ctx = TaskContext::new(
            started,
            DAEMON_A,
            Arc::new(store.clone()) as Arc<dyn AttemptStore>,
            cancel.clone(),
            grace,
        );
        Running {
            store,
            ctx,
            cancel,
            id,
        }
    }

    async fn run(&self, command: &str) -> HandlerResult {
        tokio::time::timeout(Duration::from_secs(5), run(command, self.ctx.clone()))
            .await
            .expect("exec::run took too long")
    }

    async fn status(&self) -> Status {
        self.task().await.status
    }

    async fn task(&self) -> atp_core::Task {
        self.store.task_get(&TaskRef::Id(self.id)).await.unwrap()
    }

    async fn response(&self) -> Option<Response> {
        self.store
            .task_response_get(&TaskRef::Id(self.id))
            .await
            .unwrap()
    }

    async fn log(&self) -> Vec<(Status, String)> {
        self.store
            .task_log(&TaskRef::Id(self.id))
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.status, r.message))
            .collect()
    }
}

/// Quotes a path for a shell command line.
fn q(path: &Path) -> String {
    shlex::try_quote(path.to_str().expect("UTF-8 path"))
        .expect("quotable")
        .into_owned()
}

/// Waits (at most 2 s) for `path` to hold a pid.
async fn read_pid(path: &Path) -> Pid {
    eventually(Duration::from_secs(2), "a pid in the pid file", || async {
        let text = std::fs::read_to_string(path).ok()?;
        text.trim().parse::<i32>().ok().map(Pid::from_raw)
    })
    .await
}

/// Whether `pid` is gone (a zombie waiting for a reaper counts as gone:
/// it runs no more).
fn is_gone(pid: Pid) -> bool {
    if nix::sys::signal::kill(pid, None) == Err(Errno::ESRCH) {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(true)
}

/// Waits (at most 2 s) for `pid` to be gone.
async fn assert_gone(pid: Pid) {
    eventually(Duration::from_secs(2), "the process to be gone", || async {
        is_gone(pid).then_some(())
    })
    .await;
}

#[tokio::test]
async fn input_reaches_stdin_and_stdout_becomes_the_response() {
    let r = Running::new(json!({"numbers": [1, 2, 3]})).await;
    r.run("sh -c 'cat'").await.unwrap();
    assert_eq!(r.status().await, Status::Finished);
    let response = r.response().await.expect("a response");
    assert_eq!(response.mime_type, "text/plain");
    assert_eq!(response.body, b"{\"numbers\":[1,2,3]}\n");
    let log = r.log().await;
    assert_eq!(
        log.last().unwrap(),
        &(
            Status::Finished,
            "Finished: sh exited with status 0".to_owned()
        )
    );
}

#[tokio::test]
async fn the_environment_describes_the_attempt() {
    let r = Running::new(Value::Null).await;
    r.run(r#"sh -c 'printf %s "$ATP_TASK_ID|$ATP_TASK_TYPE|$ATP_TASK_IDENTIFIER|$ATP_TASK_START|$ATP_DAEMON_ID|$ATP_WORKER_ID"'"#)
        .await
        .unwrap();
    let body = r.response().await.expect("a response").body;
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!(
            "{}|exec-test|job 1|1|0xA00000000000000A|0xA00000000000000A",
            r.id
        )
    );
}

#[tokio::test]
async fn a_non_zero_exit_fails_with_the_end_of_stderr_and_keeps_stdout() {
    let r = Running::new(Value::Null).await;
    let err = r
        .run("sh -c 'echo partial; echo first >&2; echo \"@atp progress 10\" >&2; echo \"second line\" >&2; exit 3'")
        .await
        .unwrap_err();
    assert_eq!(err.message(), "first\nsecond line");
    let response = r.response().await.expect("stdout kept on failure");
    assert_eq!(response.body, b"partial\n");
    // The daemon, not the handler, marks the task FAILED.
    assert_eq!(r.status().await, Status::Running);
}

/// `@atp retry …` sets how the failure is retried: never, after the
/// program's own delay, or (the default) by the type's policy.
#[tokio::test]
async fn the_protocol_says_how_a_failure_is_retried() {
    let r = Running::new(Value::Null).await;
    let never = r
        .run("sh -c 'echo \"@atp retry never\" >&2; echo nope >&2; exit 1'")
        .await
        .unwrap_err();
    assert_eq!(
        (never.message(), never.retry()),
        ("nope", atp_core::Retry::Never)
    );
    let later = r
        .run("sh -c 'echo \"@atp retry after 90\" >&2; exit 75'")
        .await
        .unwrap_err();
    assert_eq!(
        later.retry(),
        atp_core::Retry::After(std::time::Duration::from_secs(90))
    );
    let plain = r.run("sh -c 'exit 1'").await.unwrap_err();
    assert_eq!(plain.retry(), atp_core::Retry::ByPolicy);
    // A success ignores it.
    r.run("sh -c 'echo \"@atp retry never\" >&2'")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_silent_failure_names_the_exit_status_or_signal() {
    let r = Running::new(Value::Null).await;
    let err = r.run("sh -c 'exit 7'").await.unwrap_err();
    assert_eq!(err.message(), "sh exited with status 7");
    assert_eq!(r.response().await, None);

    let r = Running::new(Value::Null).await;
    let err = r.run("sh -c 'kill -TERM $$'").await.unwrap_err();
    assert_eq!(err.message(), "sh was killed by signal SIGTERM (15)");
}

#[tokio::test]
async fn only_the_end_of_a_long_stderr_is_kept() {
    let r = Running::new(Value::Null).await;
    let err = r
        .run("sh -c 'i=0; while [ $i -lt 100 ]; do echo \"line $i\" >&2; i=$((i+1)); done; exit 1'")
        .await
        .unwrap_err();
    let expected: Vec<String> = (80..100).map(|i| format!("line {i}")).collect();
    assert_eq!(err.message(), expected.join("\n"));
}

#[tokio::test]
async fn progress_is_recorded_while_the_program_runs() {
    let r = Running::new(Value::Null).await;
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let command = format!(
        "sh -c 'echo \"@atp progress 42 halfway there\" >&2; while [ ! -e {} ]; do sleep 0.01; done; echo \"@atp log almost done\" >&2'",
        q(&go)
    );
    let ctx = r.ctx.clone();
    let job = tokio::spawn(async move { run(&command, ctx).await });
    let p = eventually(Duration::from_secs(2), "progress while running", || async {
        r.task().await.progress
    })
    .await;
    assert_eq!(p.percent, Some(42.0));
    assert_eq!(p.message, "halfway there");
    std::fs::write(&go, "").unwrap();
    tokio::time::timeout(Duration::from_secs(2), job)
        .await
        .expect("the program ends")
        .unwrap()
        .unwrap();
    let p = r.task().await.progress.expect("progress kept");
    assert_eq!(p.percent, Some(42.0), "log keeps the last percent");
    assert_eq!(p.message, "almost done");
}

#[tokio::test]
async fn the_protocol_sets_the_mime_type() {
    let r = Running::new(Value::Null).await;
    r.run("sh -c 'echo \"@atp mime application/json\" >&2; printf \"{}\"'")
        .await
        .unwrap();
    let response = r.response().await.expect("a response");
    assert_eq!(response.mime_type, "application/json");
    assert_eq!(response.body, b"{}");
}

#[tokio::test]
async fn binary_output_is_an_octet_stream() {
    let r = Running::new(Value::Null).await;
    r.run(r"sh -c 'printf \\377\\376'").await.unwrap();
    let response = r.response().await.expect("a response");
    assert_eq!(response.mime_type, "application/octet-stream");
    assert_eq!(response.body, [0xFF, 0xFE]);
}

#[tokio::test]
async fn pause_and_resume_are_logged() {
    let r = Running::new(Value::Null).await;
    r.run("sh -c 'echo \"@atp pause waiting for the printer\" >&2; echo \"@atp heartbeat\" >&2; echo \"@atp resume\" >&2; echo ok'")
        .await
        .unwrap();
    let log = r.log().await;
    let tail: Vec<_> = log.iter().rev().take(3).rev().cloned().collect();
    assert_eq!(
        tail,
        vec![
            (Status::Paused, "waiting for the printer".to_owned()),
            (Status::Running, "Resumed by sh".to_owned()),
            (
                Status::Finished,
                "Finished: sh exited with status 0".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn bad_protocol_lines_are_ignored_and_not_error_text() {
    let r = Running::new(Value::Null).await;
    let err = r
        .run("sh -c 'echo \"@atp frobnicate\" >&2; echo \"@atp progress 300\" >&2; echo \"@atp mime nonsense\" >&2; echo \"@atp\" >&2; exit 2'")
        .await
        .unwrap_err();
    assert_eq!(err.message(), "sh exited with status 2");
    assert_eq!(r.task().await.progress, None);
}

#[tokio::test]
async fn cancellation_kills_the_whole_process_group() {
    let r = Running::new(Value::Null).await;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let command = format!("sh -c 'sleep 100 & echo $! > {}; wait'", q(&pidfile));
    let ctx = r.ctx.clone();
    let job = tokio::spawn(async move { run(&command, ctx).await });
    let pid = read_pid(&pidfile).await;
    r.cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(2), job)
        .await
        .expect("the handler stops")
        .unwrap();
    assert_eq!(result.unwrap_err().message(), CANCELLED);
    assert_gone(pid).await;
}

/// An operator's cancel: SIGTERM to the group, and a program that traps it
/// cleans up and exits well within the grace (not killed at its end).
#[tokio::test]
async fn a_cancel_sends_sigterm_and_a_program_that_traps_it_cleans_up() {
    let r = Running::with_grace(Value::Null, Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let (pidfile, cleaned) = (dir.path().join("pid"), dir.path().join("cleaned"));
    let command = format!(
        "sh -c 'trap \"echo bye > {}; exit 3\" TERM; echo $$ > {}; while :; do sleep 0.05; done'",
        q(&cleaned),
        q(&pidfile)
    );
    let ctx = r.ctx.clone();
    let job = tokio::spawn(async move { run(&command, ctx).await });
    let pid = read_pid(&pidfile).await;
    let asked = Instant::now();
    r.ctx.mark_cancelled();
    let result = tokio::time::timeout(Duration::from_secs(5), job)
        .await
        .expect("the program exits on SIGTERM, long before the grace")
        .unwrap();
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert_eq!(result.unwrap_err().message(), CANCELLED);
    assert_eq!(std::fs::read_to_string(&cleaned).unwrap(), "bye\n");
    assert_gone(pid).await;
}

/// A cancel the program's own write runs into before the daemon hears of
/// it (its progress is refused as stale): the attempt reads its task back,
/// finds it CANCELLED, and stops the program as a cancel (SIGTERM first),
/// not as a loss (SIGKILL at once).
#[tokio::test]
async fn a_cancel_found_by_a_refused_write_still_sends_sigterm() {
    let r = Running::with_grace(Value::Null, Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let (pidfile, cleaned) = (dir.path().join("pid"), dir.path().join("cleaned"));
    let command = format!(
        "sh -c 'trap \"echo bye > {}; exit 3\" TERM; echo $$ > {}; while :; do echo \"@atp progress 1 tick\" >&2; sleep 0.05; done'",
        q(&cleaned),
        q(&pidfile)
    );
    let ctx = r.ctx.clone();
    let job = tokio::spawn(async move { run(&command, ctx).await });
    let pid = read_pid(&pidfile).await;
    r.store.task_cancel(&TaskRef::Id(r.id), None).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), job)
        .await
        .expect("the program stops")
        .unwrap();
    assert_eq!(result.unwrap_err().message(), CANCELLED);
    assert!(r.ctx.cancelled_by_operator());
    assert_eq!(std::fs::read_to_string(&cleaned).unwrap(), "bye\n");
    assert_gone(pid).await;
    assert_eq!(r.status().await, Status::Cancelled);
}

/// A program that ignores SIGTERM (and its children, which inherit that)
/// is SIGKILLed with its whole group once the grace is over, not before.
#[tokio::test]
async fn a_program_that_ignores_sigterm_is_killed_with_its_group_after_the_grace() {
    let grace = Duration::from_millis(400);
    let r = Running::with_grace(Value::Null, grace).await;
    let dir = tempfile::tempdir().unwrap();
    let (pidfile, childfile) = (dir.path().join("pid"), dir.path().join("child"));
    let command = format!(
        "sh -c 'trap \"\" TERM; sleep 100 & echo $! > {}; echo $$ > {}; wait; wait; wait'",
        q(&childfile),
        q(&pidfile)
    );
    let ctx = r.ctx.clone();
    let job = tokio::spawn(async move { run(&command, ctx).await });
    let pid = read_pid(&pidfile).await;
    let child = read_pid(&childfile).await;
    let asked = Instant::now();
    r.ctx.mark_cancelled();
    let result = tokio::time::timeout(Duration::from_secs(5), job)
        .await
        .expect("killed after the grace")
        .unwrap();
    assert!(
        asked.elapsed() >= grace,
        "killed before the grace: {:?}",
        asked.elapsed()
    );
    assert_eq!(result.unwrap_err().message(), CANCELLED);
    assert_gone(pid).await;
    assert_gone(child).await;
}

#[tokio::test]
async fn a_background_child_left_behind_does_not_hold_the_task() {
    let r = Running::new(Value::Null).await;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let command = format!("sh -c 'sleep 100 & echo $! > {}; echo done'", q(&pidfile));
    let started = Instant::now();
    r.run(&command).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(r.response().await.expect("a response").body, b"done\n");
    assert_eq!(r.status().await, Status::Finished);
    assert_gone(read_pid(&pidfile).await).await;
}

#[tokio::test]
async fn a_missing_program_is_named() {
    let r = Running::new(Value::Null).await;
    let err = r
        .run("/nonexistent/atp-no-such-program --flag")
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "exec: program \"/nonexistent/atp-no-such-program\" not found"
    );
    let err = r.run("atp-no-such-program-in-path").await.unwrap_err();
    assert!(
        err.message()
            .contains("\"atp-no-such-program-in-path\" not found (looked in PATH)")
    );
}

#[tokio::test]
async fn a_program_that_is_not_executable_is_named() {
    let r = Running::new(Value::Null).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script");
    std::fs::write(&file, "#!/bin/sh\necho hi\n").unwrap();
    let err = r.run(&q(&file)).await.unwrap_err();
    assert!(err.message().contains("is not executable"), "{err}");
}

#[tokio::test]
async fn empty_or_unparsable_commands_are_refused() {
    let r = Running::new(Value::Null).await;
    for (command, expected) in [
        ("", "empty command"),
        ("   ", "empty command"),
        ("''", "empty program name"),
        ("sh -c 'unterminated", "cannot parse"),
    ] {
        let err = r.run(command).await.unwrap_err();
        assert!(err.message().contains(expected), "{command:?}: {err}");
    }
    assert_eq!(r.status().await, Status::Running);
}

#[tokio::test]
async fn an_already_cancelled_attempt_starts_nothing() {
    let r = Running::new(Value::Null).await;
    r.cancel.cancel();
    let err = r.run("sh -c 'echo ran'").await.unwrap_err();
    assert_eq!(err.message(), CANCELLED);
    assert_eq!(r.response().await, None);
}

#[tokio::test]
async fn output_held_by_a_process_outside_the_group_is_not_awaited() {
    let r = Running::new(Value::Null).await;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    // `setsid` moves the sleep out of the group; it keeps stdout open.
    let command = format!(
        "sh -c 'setsid sh -c \"echo \\$\\$ > {}; exec sleep 100\" & echo done'",
        q(&pidfile)
    );
    let started = Instant::now();
    let result = r.run(&command).await;
    let escaped = read_pid(&pidfile).await;
    let _ = nix::sys::signal::kill(escaped, Signal::SIGKILL);
    result.unwrap();
    assert!(started.elapsed() < DRAIN + AFTER_KILL + Duration::from_millis(500));
    assert_eq!(r.response().await.expect("a response").body, b"done\n");
}

#[tokio::test]
async fn input_the_program_never_reads_does_not_block_it() {
    let r = Running::new(json!("x".repeat(512 * 1024))).await;
    r.run("sh -c 'echo ignored the input'").await.unwrap();
    assert_eq!(r.status().await, Status::Finished);
}

#[tokio::test]
async fn too_much_stdout_kills_the_program() {
    let r = Running::new(Value::Null).await;
    let command = format!("head -c {} /dev/zero", MAX_STDOUT_BYTES + 1);
    let err = r.run(&command).await.unwrap_err();
    assert_eq!(
        err.message(),
        "head wrote more than 64 MiB to stdout and was killed"
    );
    assert_eq!(r.response().await, None);
}
