//! [`Session`]: what the `@atp` commands of one run do to its task, and
//! the stderr kept for a failure message.

use tracing::{debug, info, warn};

use super::lines::Tail;
use super::protocol::{Directive, Line, classify, progress_message};
use crate::context::TaskContext;

/// What the protocol has set so far, and the stderr kept for a failure.
pub(super) struct Session<'a> {
    ctx: &'a TaskContext,
    program: &'a str,
    /// The last percent reported, kept by `@atp log`.
    percent: Option<f64>,
    pub(super) mime: Option<String>,
    /// How a failure of this run is retried (`@atp retry …`).
    pub(super) retry: atp_core::Retry,
    pub(super) tail: Tail,
}

impl<'a> Session<'a> {
    pub(super) fn new(ctx: &'a TaskContext, program: &'a str) -> Self {
        Session {
            ctx,
            program,
            percent: None,
            mime: None,
            retry: atp_core::Retry::ByPolicy,
            tail: Tail::default(),
        }
    }

    /// Handles one stderr line. Store errors are logged, not fatal: if the
    /// attempt lost its task, its cancellation has fired and the run loop
    /// stops the program.
    pub(super) async fn line(&mut self, line: String) {
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
            Directive::Retry(retry) => {
                self.retry = retry;
                Ok(())
            }
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
