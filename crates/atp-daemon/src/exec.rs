//! `exec:PROGRAM ARG…`: a task handled by an external program, written in
//! any language. The user-facing protocol is in `EXEC.md`; in short:
//!
//! - the command is split like a shell would (`shlex`), but no shell runs
//!   unless the command starts one itself;
//! - the task's input goes to stdin as one line of JSON, and `ATP_TASK_ID`,
//!   `ATP_TASK_TYPE`, `ATP_TASK_IDENTIFIER`, `ATP_TASK_START` and
//!   `ATP_WORKER_ID` describe the attempt;
//! - stdout becomes the response; exit status 0 finishes the task, anything
//!   else fails it with the end of stderr;
//! - stderr lines starting with `@atp ` report progress, pause and resume,
//!   set the response's MIME type or heartbeat, as they arrive.
//!
//! The program runs in a process group of its own. The whole group is
//! killed when the attempt is cancelled, and again once the program has
//! exited, so that a background child it left behind can neither outlive
//! the attempt nor keep the attempt waiting on a pipe it still holds.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use atp_core::Response;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::context::TaskContext;
use crate::handler::{HandlerError, HandlerResult};

/// Most bytes of stdout kept as the response; a program writing more is
/// killed and its task fails.
pub const MAX_STDOUT_BYTES: usize = 64 * 1024 * 1024;

/// Longest stderr line kept, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE_BYTES: usize = 4 * 1024;

/// How many of the last non-protocol stderr lines make a failure message.
const TAIL_LINES: usize = 20;

/// Longest failure message taken from stderr, in bytes.
const TAIL_BYTES: usize = 2000;

/// Longest progress message the store accepts, in characters.
const MAX_PROGRESS_CHARS: usize = 1024;

/// How long stdout and stderr may stay open after the program exited
/// (held by a background child) before the process group is killed.
const DRAIN: Duration = Duration::from_secs(1);

/// How long to read what is left in the pipes after that kill; a pipe still
/// open then is held by a process that left the group, and is abandoned.
const AFTER_KILL: Duration = Duration::from_millis(250);

/// How long to wait for a killed program to be reaped.
const REAP: Duration = Duration::from_secs(5);

/// The message of an attempt whose program was killed because the attempt
/// was cancelled (timeout, hard shutdown, or the task was taken away).
pub const CANCELLED: &str = "killed: the attempt was cancelled";

/// Runs `command` (the handler string after `exec:`) for the attempt in `ctx`.
pub async fn run(command: &str, ctx: TaskContext) -> HandlerResult {
    let argv = split(command)?;
    let program = argv[0].clone();
    if ctx.is_cancelled() {
        return Err(HandlerError::new(CANCELLED));
    }
    let mut input = serde_json::to_vec(ctx.input())?;
    input.push(b'\n');

    let mut child = spawn(&argv, &ctx)?;
    let mut group = Group::of(&child);
    let (Some(stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        // Cannot happen: all three are piped above.
        return Err(HandlerError::new(format!(
            "exec: {program:?} started without its pipes"
        )));
    };
    debug!(task = %ctx.id(), program, pid = ?child.id(), "exec: started");

    let mut session = Session::new(&ctx, &program);
    let feed = feed_stdin(stdin, input);
    tokio::pin!(feed);
    let mut fed = false;
    let mut out = Vec::new();
    let mut out_chunk = vec![0u8; 64 * 1024];
    let mut out_open = true;
    let mut err_chunk = vec![0u8; 8 * 1024];
    let mut err_open = true;
    let mut lines = LineSplitter::default();
    let mut status: Option<ExitStatus> = None;
    // Set once the program exited: when to kill the group if the pipes are
    // still open, then when to stop reading them.
    let mut deadline: Option<Instant> = None;

    // The exit, both pipes, the input and cancellation are watched together:
    // a program blocked on a full pipe never exits, and stderr is handled as
    // it comes so that progress is live.
    while status.is_none() || out_open || err_open {
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = ctx.cancelled() => {
                group.kill();
                reap(&mut child, status).await;
                info!(task = %ctx.id(), program, "exec: killed the process group: the attempt was cancelled");
                return Err(HandlerError::new(CANCELLED));
            }
            r = child.wait(), if status.is_none() => match r {
                Ok(s) => {
                    debug!(task = %ctx.id(), program, status = %s, "exec: exited");
                    status = Some(s);
                    deadline = Some(Instant::now() + DRAIN);
                }
                Err(e) => {
                    group.kill();
                    return Err(HandlerError::new(format!(
                        "exec: waiting for {program:?} failed: {e}"
                    )));
                }
            },
            r = stdout.read(&mut out_chunk), if out_open => match r {
                Ok(0) => out_open = false,
                Ok(n) if out.len() + n > MAX_STDOUT_BYTES => {
                    group.kill();
                    reap(&mut child, status).await;
                    return Err(HandlerError::new(format!(
                        "{program} wrote more than {} MiB to stdout and was killed",
                        MAX_STDOUT_BYTES / (1024 * 1024)
                    )));
                }
                Ok(n) => out.extend_from_slice(&out_chunk[..n]),
                Err(e) => {
                    warn!(task = %ctx.id(), program, error = %e, "exec: reading stdout failed");
                    out_open = false;
                }
            },
            r = stderr.read(&mut err_chunk), if err_open => {
                let done = match r {
                    Ok(0) => true,
                    Ok(n) => {
                        for line in lines.push(&err_chunk[..n]) {
                            session.line(line).await;
                        }
                        false
                    }
                    Err(e) => {
                        warn!(task = %ctx.id(), program, error = %e, "exec: reading stderr failed");
                        true
                    }
                };
                if done {
                    err_open = false;
                    if let Some(line) = lines.finish() {
                        session.line(line).await;
                    }
                }
            }
            () = &mut feed, if !fed => fed = true,
            () = timer => {
                if group.kill() {
                    debug!(task = %ctx.id(), program, "exec: output still open after exit; killed the process group");
                    deadline = Some(Instant::now() + AFTER_KILL);
                } else {
                    warn!(task = %ctx.id(), program, "exec: output held open by a process outside the group; not waiting for it");
                    break;
                }
            }
        }
    }
    // Whatever the program left running in its group goes with it.
    group.kill();
    if let Some(line) = lines.finish() {
        session.line(line).await;
    }

    let Some(status) = status else {
        // The loop only ends once the program exited.
        return Err(HandlerError::new(format!(
            "exec: lost track of {program:?}"
        )));
    };
    let mime = session
        .mime
        .take()
        .unwrap_or_else(|| default_mime(&out).to_owned());
    if status.success() {
        let message = format!("Finished: {program} exited with status 0");
        return if out.is_empty() {
            ctx.finish(message).await
        } else {
            ctx.finish_with(Response::new(mime, out), message).await
        };
    }
    if !out.is_empty()
        && let Err(e) = ctx.set_response(Response::new(mime, out)).await
    {
        if ctx.lost() {
            return Err(e);
        }
        warn!(task = %ctx.id(), program, error = %e, "exec: could not store the failed program's stdout");
    }
    Err(HandlerError::new(
        session
            .tail
            .message()
            .unwrap_or_else(|| describe_failure(&program, status)),
    ))
}

/// Splits the command into the program and its arguments.
fn split(command: &str) -> Result<Vec<String>, HandlerError> {
    let argv = shlex::split(command).ok_or_else(|| {
        HandlerError::new(format!(
            "exec: cannot parse the command {command:?} (unbalanced quotes or a trailing backslash)"
        ))
    })?;
    match argv.first() {
        None => Err(HandlerError::new(
            "exec: empty command (expected exec:PROGRAM ARG…)",
        )),
        Some(p) if p.is_empty() => Err(HandlerError::new(format!(
            "exec: empty program name in {command:?}"
        ))),
        Some(_) => Ok(argv),
    }
}

/// Starts the program in a process group of its own, with piped stdio and
/// the attempt's environment.
fn spawn(argv: &[String], ctx: &TaskContext) -> Result<Child, HandlerError> {
    let program = &argv[0];
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..])
        .env("ATP_TASK_ID", ctx.id().to_string())
        .env("ATP_TASK_TYPE", ctx.task_type().name.as_str())
        .env("ATP_TASK_IDENTIFIER", ctx.identifier().as_str())
        .env("ATP_TASK_START", ctx.start().to_string())
        .env("ATP_WORKER_ID", ctx.worker_id().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn().map_err(|e| {
        let looked = if program.contains('/') {
            ""
        } else {
            " (looked in PATH)"
        };
        HandlerError::new(match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("exec: program {program:?} not found{looked}")
            }
            std::io::ErrorKind::PermissionDenied => {
                format!("exec: program {program:?} is not executable (permission denied)")
            }
            _ => format!("exec: cannot start {program:?}: {e}"),
        })
    })
}

/// Writes the input and closes stdin. A program that exits without
/// reading it is not an error.
async fn feed_stdin(mut stdin: ChildStdin, input: Vec<u8>) {
    if let Err(e) = stdin.write_all(&input).await
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        debug!(error = %e, "exec: writing the input failed");
    }
    drop(stdin);
}

/// Waits (boundedly) for a killed program, so it does not stay a zombie.
async fn reap(child: &mut Child, status: Option<ExitStatus>) {
    if status.is_none() && tokio::time::timeout(REAP, child.wait()).await.is_err() {
        warn!(pid = ?child.id(), "exec: a killed program did not exit in time");
    }
}

/// `PROGRAM exited with status N` or `PROGRAM was killed by signal S`.
fn describe_failure(program: &str, status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("{program} exited with status {code}");
    }
    match status.signal() {
        Some(n) => match Signal::try_from(n) {
            Ok(s) => format!("{program} was killed by signal {s} ({n})"),
            Err(_) => format!("{program} was killed by signal {n}"),
        },
        None => format!("{program} ended with {status}"),
    }
}

/// `text/plain` for UTF-8 output, `application/octet-stream` otherwise.
fn default_mime(out: &[u8]) -> &'static str {
    if std::str::from_utf8(out).is_ok() {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

/// The program's process group, whose id is the program's pid. It is
/// killed once: SIGKILL cannot be caught, so nothing of it is left after,
/// and not signalling the id again avoids hitting a reused one.
struct Group(Option<Pid>);

impl Group {
    fn of(child: &Child) -> Self {
        Group(
            child
                .id()
                .and_then(|pid| i32::try_from(pid).ok())
                .map(Pid::from_raw),
        )
    }

    /// SIGKILLs every process in the group, unless that was done already
    /// (then returns false). A group already gone is fine.
    fn kill(&mut self) -> bool {
        let Some(pgid) = self.0.take() else {
            return false;
        };
        match killpg(pgid, Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                warn!(pgid = pgid.as_raw(), error = %e, "exec: killing the process group failed");
            }
        }
        true
    }
}

impl Drop for Group {
    /// If the handler is dropped mid-way (the daemon gave up waiting for
    /// it), the program's group still goes.
    fn drop(&mut self) {
        self.kill();
    }
}

/// Splits stderr into lines, keeping at most [`MAX_LINE_BYTES`] of each.
#[derive(Default)]
struct LineSplitter {
    partial: Vec<u8>,
    /// The current line was longer than the cap; its rest is dropped.
    overflow: bool,
}

impl LineSplitter {
    /// The lines completed by `bytes`.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (part, newline) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], Some(i)),
                None => (rest, None),
            };
            let room = MAX_LINE_BYTES.saturating_sub(self.partial.len());
            if part.len() > room {
                self.overflow = true;
            }
            self.partial
                .extend_from_slice(&part[..part.len().min(room)]);
            match newline {
                Some(i) => {
                    lines.push(self.take());
                    rest = &rest[i + 1..];
                }
                None => rest = &[],
            }
        }
        lines
    }

    /// The last line, if stderr ended without a newline.
    fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty() || self.overflow).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let mut line = String::from_utf8_lossy(&self.partial).into_owned();
        if line.ends_with('\r') {
            line.pop();
        }
        if self.overflow {
            line.push('…');
        }
        self.partial.clear();
        self.overflow = false;
        line
    }
}

/// The last non-protocol stderr lines.
#[derive(Default)]
struct Tail(VecDeque<String>);

impl Tail {
    fn push(&mut self, line: String) {
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line);
    }

    /// The kept lines, at most [`TAIL_BYTES`] from their end, trimmed;
    /// `None` when nothing but white space is left.
    fn message(&self) -> Option<String> {
        let text = self
            .0
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n");
        let text = text.trim();
        let mut cut = text.len().saturating_sub(TAIL_BYTES);
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        let kept = text[cut..].trim();
        match (kept.is_empty(), cut > 0) {
            (true, _) => None,
            (false, true) => Some(format!("…{kept}")),
            (false, false) => Some(kept.to_owned()),
        }
    }
}

/// A protocol command from stderr.
#[derive(Debug, Clone, PartialEq)]
enum Directive {
    Progress(Option<f64>, String),
    Log(String),
    Pause(String),
    Resume(String),
    Mime(String),
    Heartbeat,
}

/// What a stderr line is.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    /// Ordinary text, kept for the failure message.
    Text(String),
    /// An `@atp` line: a command, or why it is not one.
    Protocol(Result<Directive, String>),
}

const PREFIX: &str = "@atp";

fn classify(line: String) -> Line {
    match line.strip_prefix(PREFIX) {
        Some("") => Line::Protocol(Err("no command".into())),
        Some(rest) if rest.starts_with(' ') => Line::Protocol(parse_directive(rest.trim())),
        _ => Line::Text(line),
    }
}

fn parse_directive(text: &str) -> Result<Directive, String> {
    let (verb, args) = match text.split_once(char::is_whitespace) {
        Some((verb, args)) => (verb, args.trim()),
        None => (text, ""),
    };
    match verb {
        "progress" => {
            let (percent, message) = match args.split_once(char::is_whitespace) {
                Some((p, m)) => (p, m.trim()),
                None => (args, ""),
            };
            let percent = parse_percent(percent)?;
            Ok(Directive::Progress(percent, message.to_owned()))
        }
        "log" if args.is_empty() => Err("log needs a message".into()),
        "log" => Ok(Directive::Log(args.to_owned())),
        "pause" => Ok(Directive::Pause(args.to_owned())),
        "resume" => Ok(Directive::Resume(args.to_owned())),
        "mime" => atp_core::payload::validate_mime(args)
            .map(|()| Directive::Mime(args.to_owned()))
            .map_err(|e| e.to_string()),
        "heartbeat" if args.is_empty() => Ok(Directive::Heartbeat),
        "heartbeat" => Err("heartbeat takes no arguments".into()),
        "" => Err("no command".into()),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// `-` (unknown) or a number from 0 to 100, optionally followed by `%`.
fn parse_percent(text: &str) -> Result<Option<f64>, String> {
    if text == "-" {
        return Ok(None);
    }
    let number = text.strip_suffix('%').unwrap_or(text);
    match number.parse::<f64>() {
        Ok(p) if p.is_finite() && (0.0..=100.0).contains(&p) => Ok(Some(p)),
        _ => Err(format!(
            "progress needs a percent from 0 to 100 or '-', got {text:?}"
        )),
    }
}

/// Cuts a progress message to what the store accepts.
fn progress_message(message: &str) -> String {
    match message.char_indices().nth(MAX_PROGRESS_CHARS) {
        Some((end, _)) => message[..end].to_owned(),
        None => message.to_owned(),
    }
}

/// What the protocol has set so far, and the stderr kept for a failure.
struct Session<'a> {
    ctx: &'a TaskContext,
    program: &'a str,
    /// The last percent reported, kept by `@atp log`.
    percent: Option<f64>,
    mime: Option<String>,
    tail: Tail,
}

impl<'a> Session<'a> {
    fn new(ctx: &'a TaskContext, program: &'a str) -> Self {
        Session {
            ctx,
            program,
            percent: None,
            mime: None,
            tail: Tail::default(),
        }
    }

    /// Handles one stderr line. Store errors are logged, not fatal: if the
    /// attempt lost its task, its cancellation has fired and the run loop
    /// stops the program.
    async fn line(&mut self, line: String) {
        let ctx = self.ctx;
        let task = ctx.id();
        let program = self.program;
        let directive = match classify(line) {
            Line::Text(text) => {
                debug!(task = %task, program, "exec stderr: {text}");
                self.tail.push(text);
                return;
            }
            Line::Protocol(Err(why)) => {
                warn!(task = %task, program, "exec: ignored an @atp line: {why}");
                return;
            }
            Line::Protocol(Ok(d)) => d,
        };
        let done = match directive {
            Directive::Progress(percent, message) => {
                self.percent = percent;
                ctx.progress(percent, progress_message(&message)).await
            }
            Directive::Log(message) => {
                info!(task = %task, program, "{message}");
                ctx.progress(self.percent, progress_message(&message)).await
            }
            Directive::Pause(message) => {
                ctx.pause(or_default(message, || format!("Paused by {program}")))
                    .await
            }
            Directive::Resume(message) => {
                ctx.resume(or_default(message, || format!("Resumed by {program}")))
                    .await
            }
            Directive::Mime(mime) => {
                self.mime = Some(mime);
                Ok(())
            }
            Directive::Heartbeat => ctx.heartbeat().await,
        };
        if let Err(e) = done
            && !ctx.lost()
        {
            warn!(task = %task, program, error = %e, "exec: an @atp command failed");
        }
    }
}

fn or_default(message: String, default: impl FnOnce() -> String) -> String {
    if message.is_empty() {
        default()
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use atp_core::store::ClaimParams;
    use atp_core::{NewTask, Status, Store, TaskId, TaskRef};
    use atp_store::conformance::{DAEMON_A, ident, register, task_type};
    use atp_store::sqlite::SqliteStore;
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
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            if let Ok(text) = std::fs::read_to_string(path)
                && let Ok(pid) = text.trim().parse::<i32>()
            {
                return Pid::from_raw(pid);
            }
            assert!(Instant::now() < until, "no pid in {}", path.display());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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
        let until = Instant::now() + Duration::from_secs(2);
        while !is_gone(pid) {
            assert!(Instant::now() < until, "process {pid} is still alive");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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
        r.run(r#"sh -c 'printf %s "$ATP_TASK_ID|$ATP_TASK_TYPE|$ATP_TASK_IDENTIFIER|$ATP_TASK_START|$ATP_WORKER_ID"'"#)
            .await
            .unwrap();
        let body = r.response().await.expect("a response").body;
        assert_eq!(
            String::from_utf8(body).unwrap(),
            format!("{}|exec-test|job 1|1|0xA00000000000000A", r.id)
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
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(p) = r.task().await.progress {
                assert_eq!(p.percent, Some(42.0));
                assert_eq!(p.message, "halfway there");
                break;
            }
            assert!(Instant::now() < until, "no progress while running");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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

    #[test]
    fn directives_parse() {
        use Directive::*;
        let ok = |s: &str| match classify(s.to_owned()) {
            Line::Protocol(Ok(d)) => d,
            other => panic!("{s:?}: {other:?}"),
        };
        assert_eq!(ok("@atp progress 5"), Progress(Some(5.0), String::new()));
        assert_eq!(
            ok("@atp progress 12.5%  a  b "),
            Progress(Some(12.5), "a  b".into())
        );
        assert_eq!(
            ok("@atp progress - working"),
            Progress(None, "working".into())
        );
        assert_eq!(ok("@atp log hello world"), Log("hello world".into()));
        assert_eq!(ok("@atp pause"), Pause(String::new()));
        assert_eq!(ok("@atp resume go on"), Resume("go on".into()));
        assert_eq!(
            ok("@atp mime text/csv; charset=utf-8"),
            Mime("text/csv; charset=utf-8".into())
        );
        assert_eq!(ok("@atp heartbeat"), Heartbeat);
        for bad in [
            "@atp",
            "@atp ",
            "@atp progress",
            "@atp progress 101",
            "@atp progress -1",
            "@atp progress NaN",
            "@atp progress inf",
            "@atp log",
            "@atp mime",
            "@atp mime nonsense",
            "@atp heartbeat now",
            "@atp dance",
        ] {
            assert!(
                matches!(classify(bad.to_owned()), Line::Protocol(Err(_))),
                "{bad:?}"
            );
        }
        for text in ["@atpprogress 5", " @atp progress 5", "error: @atp", ""] {
            assert_eq!(classify(text.to_owned()), Line::Text(text.to_owned()));
        }
    }

    #[test]
    fn lines_are_split_across_reads_and_capped() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"ab"), Vec::<String>::new());
        assert_eq!(s.push(b"c\r\nd\n\ne"), vec!["abc", "d", ""]);
        assert_eq!(s.finish(), Some("e".to_owned()));
        assert_eq!(s.finish(), None);

        let long = vec![b'x'; MAX_LINE_BYTES * 3];
        assert!(s.push(&long).is_empty());
        let lines = s.push(b"xx\nshort\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], format!("{}…", "x".repeat(MAX_LINE_BYTES)));
        assert_eq!(lines[1], "short");
        // Invalid UTF-8 does not panic.
        assert_eq!(s.push(b"\xFF\xFE\n"), vec!["\u{FFFD}\u{FFFD}"]);
    }

    #[test]
    fn the_tail_is_bounded_in_lines_and_bytes() {
        let mut t = Tail::default();
        assert_eq!(t.message(), None);
        t.push("  ".into());
        assert_eq!(t.message(), None);
        for i in 0..30 {
            t.push(format!("line {i}"));
        }
        assert!(t.message().unwrap().starts_with("line 10\n"));
        let mut t = Tail::default();
        for _ in 0..5 {
            t.push("é".repeat(1000));
        }
        let m = t.message().unwrap();
        assert!(m.starts_with('…'));
        assert!(m.len() <= TAIL_BYTES + '…'.len_utf8());
    }

    #[test]
    fn progress_messages_are_cut_to_the_store_limit() {
        let long = "ü".repeat(MAX_PROGRESS_CHARS + 10);
        assert_eq!(progress_message(&long).chars().count(), MAX_PROGRESS_CHARS);
        assert_eq!(progress_message("short"), "short");
    }
}
