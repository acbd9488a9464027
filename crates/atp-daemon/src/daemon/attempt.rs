//! One attempt: runs the task's handler bounded by its type's timeout,
//! turns how it ended (returned, failed, panicked, cancelled) into an
//! [`Ending`], frees the slot and hands the ending to [`settle`].

use std::sync::Arc;
use std::time::Duration;

use atp_core::{StartedTask, Status, StatusChange, Store};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use super::settle::{CancelCause, Ending, settle};
use super::{Running, Shared};
use crate::context::{AttemptStore, TaskContext};
use crate::error::HandlerError;
use crate::handler::Resolved;

/// How long a cancelled handler gets to notice and clean up (an exec
/// handler kills its process group) before it is dropped.
const CLEAN_UP: Duration = Duration::from_secs(5);

/// The timeout of a type whose timeout cannot be a duration.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(3600);

/// Makes `started` a running attempt: its context, its entry in the
/// running map, and its task in `attempts`.
pub(super) fn spawn_attempt<S: Store + Clone>(
    s: &Arc<Shared<S>>,
    started: StartedTask,
    attempts: &mut JoinSet<()>,
) {
    s.report_started(&started);
    let cancel = s.abort_all.child_token();
    let task = started.attempt.task;
    let handler = started.task_type.handler.as_str().to_owned();
    let store: Arc<dyn AttemptStore> = Arc::new(s.store.clone());
    let claimed_ahead = started.status == Status::Scheduled;
    let attempt = started.attempt;
    let mut ctx = TaskContext::new(started, s.id, store, cancel.clone(), s.config.cancel_grace);
    if claimed_ahead {
        // Claimed ahead, the task is still SCHEDULED: its start (RUNNING,
        // counted) goes to the settler now, to share a transaction with the
        // ends written meanwhile, and the handler begins without waiting
        // for it. A rescue that finds it SCHEDULED counts the start anyway
        // (`decide::release`); the attempt's own status changes and its end
        // wait for it (`TaskContext::start_written`).
        let (reply_to, reply) = oneshot::channel();
        if s.settle_tx
            .send((StatusChange::start(attempt), reply_to))
            .is_err()
        {
            tracing::error!("the settler is gone; the task will be rescued");
        }
        ctx = ctx.awaiting_start(reply);
    }
    s.running.lock().expect("running map").insert(
        task,
        Running {
            ctx: ctx.clone(),
            began: tokio::time::Instant::now(),
        },
    );
    if s.cancelled_ahead
        .lock()
        .expect("cancelled ahead")
        .remove(&task)
    {
        ctx.mark_cancelled();
    }
    let shared = s.clone();
    let span = info_span!("attempt", task = %task, start = ctx.start());
    attempts.spawn(
        async move {
            run_attempt(&shared, ctx, &handler, cancel).await;
        }
        .instrument(span),
    );
}

async fn run_attempt<S: Store>(
    s: &Shared<S>,
    ctx: TaskContext,
    handler: &str,
    cancel: CancellationToken,
) {
    let timeout =
        Duration::try_from_secs_f64(ctx.task_type().timeout_secs).unwrap_or(FALLBACK_TIMEOUT);
    let began = tokio::time::Instant::now();
    let work = {
        let ctx = ctx.clone();
        match s.registry.resolve(handler) {
            Some(Resolved::Named(h)) => tokio::spawn(h.run(ctx)),
            Some(Resolved::Exec(command)) => {
                tokio::spawn(async move { crate::exec::run(&command, ctx).await })
            }
            None => tokio::spawn(std::future::ready(Err(HandlerError::new(format!(
                "no handler for {handler:?} in this daemon"
            ))))),
        }
    };
    tokio::pin!(work);
    let joined = |r: Result<Result<(), HandlerError>, tokio::task::JoinError>| match r {
        Ok(result) => Ending::Returned(result),
        Err(e) if e.is_panic() => Ending::Panicked(panic_text(e.into_panic())),
        Err(_) => Ending::Cancelled(CancelCause::Shutdown),
    };
    let mut work_done = false;
    let ending = tokio::select! {
        biased;
        () = cancel.cancelled() => Ending::Cancelled(CancelCause::Shutdown),
        () = tokio::time::sleep(timeout) => {
            cancel.cancel();
            Ending::Cancelled(CancelCause::Timeout)
        }
        r = &mut work => {
            work_done = true;
            joined(r)
        }
    };
    s.record_handler_time(began.elapsed());
    // A handler that gave up because it was cancelled (say `builtin:sleep`
    // returning "cancelled") did not fail on its own: its task goes back to
    // the queue. One that finished anyway keeps its result.
    let ending = match ending {
        Ending::Returned(Err(_)) | Ending::Panicked(_) if cancel.is_cancelled() => {
            Ending::Cancelled(CancelCause::Shutdown)
        }
        other => other,
    };
    // Give a cancelled handler a moment to notice and clean up (an `exec:`
    // program cancelled by an operator has its grace on top), then drop it.
    let clean_up = CLEAN_UP + s.config.cancel_grace;
    if let Ending::Cancelled(_) = ending
        && !work_done
        && tokio::time::timeout(clean_up, &mut work).await.is_err()
    {
        work.abort();
    }
    release_slot(s, &ctx);
    settle(s, &ctx, ending).await;
}

/// Frees the attempt's slot as soon as its handler is done, before its end
/// is written: the claim loop fetches the next tasks while the settler
/// writes this batch, so the two round trips overlap. The attempt's task
/// itself lives on until the write is acknowledged (a stop waits for it).
fn release_slot<S>(s: &Shared<S>, ctx: &TaskContext) {
    s.settling.lock().expect("settling set").insert(ctx.id());
    s.running.lock().expect("running map").remove(&ctx.id());
    s.slot_freed.notify_one();
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".to_owned())
}
