//! `exec:PROGRAM ARG…`: a task handled by an external program, written in
//! any language. The user-facing protocol is in `EXEC.md`; in short:
//!
//! - the command is split like a shell would (`shlex`), but no shell runs
//!   unless the command starts one itself;
//! - the task's input goes to stdin as one line of JSON, and `ATP_TASK_ID`,
//!   `ATP_TASK_TYPE`, `ATP_TASK_IDENTIFIER`, `ATP_TASK_START` and
//!   `ATP_DAEMON_ID` (and its deprecated alias `ATP_WORKER_ID`) describe
//!   the attempt;
//! - stdout becomes the response; exit status 0 finishes the task, anything
//!   else fails it with the end of stderr;
//! - stderr lines starting with `@atp ` report progress, pause and resume,
//!   set the response's MIME type or heartbeat, as they arrive.
//!
//! The program runs in a process group of its own. The whole group is
//! killed when the attempt is cancelled, and again once the program has
//! exited, so that a background child it left behind can neither outlive
//! the attempt nor keep the attempt waiting on a pipe it still holds. When
//! an operator cancelled the task, the group first gets SIGTERM and the
//! daemon's `cancel_grace` to exit (see `stop_gently`); a timeout or a
//! hard shutdown kills at once.
//!
//! # Layout
//! - this file: [`run`], which spawns the program and watches it;
//! - `group`: the process group, killed as one;
//! - `lines`: stderr split into capped lines, and the tail kept for a
//!   failure message;
//! - `protocol`: what an `@atp` line says;
//! - `session`: what the protocol's commands do to the task.

mod death;
mod group;
mod lines;
mod protocol;
mod session;
#[cfg(test)]
mod tests;

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use atp_core::Response;
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::context::TaskContext;
use crate::error::{HandlerError, HandlerResult};

use group::Group;
use lines::LineSplitter;
pub use lines::MAX_LINE_BYTES;
use session::Session;

/// Most bytes of stdout kept as the response; a program writing more is
/// killed and its task fails.
pub const MAX_STDOUT_BYTES: usize = 64 * 1024 * 1024;

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
                if status.is_none() && ctx.confirm_cancelled().await {
                    stop_gently(&ctx, &program, &mut group, &mut child, &mut stdout, &mut stderr)
                        .await;
                }
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
    )
    .with_retry(session.retry))
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
        .env("ATP_DAEMON_ID", ctx.daemon_id().to_string())
        // The name before "daemon" became the one word for it; kept so that
        // existing programs go on working (EXEC.md calls it deprecated).
        .env("ATP_WORKER_ID", ctx.daemon_id().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    death::die_with_daemon(&mut cmd);
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

/// An operator cancelled the task: SIGTERM to the whole group, then up to
/// the grace for the program to exit, reading (and dropping) its output
/// meanwhile so that a full pipe cannot keep it from exiting. The caller
/// SIGKILLs the group afterwards either way, so nothing of it outlives the
/// grace. The attempt's result is dropped (the task is CANCELLED), so the
/// output goes nowhere.
async fn stop_gently(
    ctx: &TaskContext,
    program: &str,
    group: &mut Group,
    child: &mut Child,
    stdout: &mut tokio::process::ChildStdout,
    stderr: &mut tokio::process::ChildStderr,
) {
    let grace = ctx.cancel_grace();
    info!(task = %ctx.id(), program, ?grace, "exec: the task was cancelled; sent SIGTERM to the process group");
    group.terminate();
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    let (mut out_open, mut err_open) = (true, true);
    let mut sink = vec![0u8; 8 * 1024];
    let mut sink_err = vec![0u8; 8 * 1024];
    loop {
        tokio::select! {
            r = child.wait() => {
                debug!(task = %ctx.id(), program, status = ?r, "exec: exited after SIGTERM");
                return;
            }
            r = stdout.read(&mut sink), if out_open => out_open = matches!(r, Ok(n) if n > 0),
            r = stderr.read(&mut sink_err), if err_open => err_open = matches!(r, Ok(n) if n > 0),
            () = &mut deadline => {
                info!(task = %ctx.id(), program, ?grace, "exec: still running after the cancel grace; killing the process group");
                return;
            }
        }
    }
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
