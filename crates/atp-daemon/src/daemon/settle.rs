//! Writing attempts' ends: [`settle`] turns an attempt's [`Ending`] into a
//! status change under the attempt's fencing token, and the settler
//! ([`settler_loop`]) writes the changes of every attempt that ended
//! meanwhile in one transaction.

use std::sync::Arc;

use atp_core::{Error as StoreError, Status, StatusChange, Store, StoreExt as _, limits};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::Shared;
use super::retry::retry_unavailable;
use crate::context::TaskContext;
use crate::error::HandlerError;

/// Why an attempt was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CancelCause {
    /// It overran its type's timeout.
    Timeout,
    /// The daemon is shutting down and the grace period is over (or it was
    /// aborted).
    Shutdown,
}

/// How an attempt ended, before it is written down.
pub(super) enum Ending {
    Returned(Result<(), HandlerError>),
    Panicked(String),
    Cancelled(CancelCause),
}

/// An attempt's end and where to report whether it was written.
pub(super) type Settle = (StatusChange, oneshot::Sender<atp_core::Result<()>>);

/// Most changes the settler writes in one transaction.
const MOST_PER_BATCH: usize = 256;

/// Writes how the attempt ended, unless the attempt lost the task.
pub(super) async fn settle<S: Store>(s: &Shared<S>, ctx: &TaskContext, ending: Ending) {
    write_end(s, ctx, ending).await;
    s.settling.lock().expect("settling set").remove(&ctx.id());
}

/// The change that records `ending`. The log speaks of the start (the
/// task's n-th run), which is what an operator counts; the attempt is the
/// fencing token the change is written under.
fn change_for<S>(s: &Shared<S>, ctx: &TaskContext, ending: Ending) -> StatusChange {
    let attempt = ctx.attempt();
    match ending {
        Ending::Returned(Ok(())) => StatusChange::finish_unless_terminal(attempt, "Finished"),
        // A handler's words are cut to what the store takes: refused, they
        // would leave the task held until its timeout.
        // A failure is retried as the type's policy and the handler's error
        // kind say (decided by the store: `atp_core::decide::change`).
        Ending::Returned(Err(e)) => {
            StatusChange::fail_unless_terminal(attempt, limits::cut_message(e.message()))
                .retrying(e.retry())
        }
        Ending::Panicked(text) => StatusChange::fail_unless_terminal(
            attempt,
            limits::cut_message(&format!("Handler panicked: {text}")),
        ),
        Ending::Cancelled(CancelCause::Timeout) => StatusChange::hand_back(
            attempt,
            format!(
                "Start {} overran the type's timeout of {} s and was aborted by daemon {}",
                ctx.start(),
                ctx.task_type().timeout_secs,
                s.id
            ),
        ),
        Ending::Cancelled(CancelCause::Shutdown) => StatusChange::hand_back(
            attempt,
            format!(
                "Aborted: daemon {} shut down before start {} ended",
                s.id,
                ctx.start()
            ),
        ),
    }
}

async fn write_end<S: Store>(s: &Shared<S>, ctx: &TaskContext, ending: Ending) {
    // The handler gave the task its final status itself: that end is
    // written already and stays, whatever the handler did next (returned
    // an error, panicked, overran its timeout: a final status is not
    // changed by any of those), even if the attempt was marked lost since
    // (a daemon taken for dead loses only the tasks it still held).
    if let Some(status) = ctx.settled_status() {
        s.report_settled(ctx, status, false);
        debug!(?status, "attempt settled by its handler");
        return;
    }
    if ctx.confirm_cancelled().await {
        // The task is CANCELLED already; writing anything (a FAILED for
        // the program SIGTERM stopped, say) would be refused by fencing.
        s.report_cancelled(ctx);
        info!("attempt stopped: its task was cancelled by an operator; its result is dropped");
        return;
    }
    if ctx.lost() {
        info!("attempt lost its task (rescued elsewhere); its result is dropped");
        return;
    }
    let change = change_for(s, ctx, ending);
    let status = change.status();
    // What the store makes of a failure: a retry while starts remain, when
    // the handler or the type's policy asks for one (the store's own rule,
    // `decide::retry_delay`, asked the same way).
    let retried = status == Status::Failed
        && ctx.start() < ctx.task_type().max_starts
        && atp_core::decide::retry_delay(
            change.retry(),
            ctx.task_type().retry.as_ref(),
            ctx.id(),
            ctx.start(),
        )
        .is_some();
    let (ack, written) = oneshot::channel();
    if s.settle_tx.send((change, ack)).is_err() {
        error!("the settler is gone; the task will be rescued");
        return;
    }
    // Sent first, so that a task claimed ahead has its start and its end
    // written in one transaction when both wait for the settler together.
    ctx.start_written().await;
    match written.await {
        Ok(Ok(())) => {
            // A task handed back with all its starts used is failed by
            // the store instead.
            let written = match status {
                Status::Accepted => {
                    atp_core::status::after_release(ctx.start(), ctx.task_type().max_starts)
                }
                _ if retried => Status::Accepted,
                other => other,
            };
            s.report_settled(ctx, written, retried);
            debug!(status = ?written, "attempt settled");
        }
        Ok(Err(StoreError::StaleAttempt { .. })) => {
            info!("attempt lost its task before it ended; its result is dropped");
        }
        Ok(Err(StoreError::InvalidTransition { .. })) if status == Status::Accepted => {
            // The task already has a final status: the handler's own
            // finish or fail, whose reply was lost.
            debug!("attempt had already settled");
        }
        Ok(Err(e)) => {
            error!(error = %e, "could not record an attempt's end; the task will be rescued")
        }
        Err(_) => error!("the settler stopped before writing an attempt's end"),
    }
}

/// Writes attempts' ends in batches: whatever ended while the previous
/// batch was being written goes in the next transaction, so a busy daemon
/// pays one commit for many tasks. Each change keeps its own result.
pub(super) async fn settler_loop<S: Store>(
    s: Arc<Shared<S>>,
    mut queue: mpsc::UnboundedReceiver<Settle>,
) {
    let never = CancellationToken::new();
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MOST_PER_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let changes: Vec<StatusChange> = batch.iter().map(|(c, _)| c.clone()).collect();
        let written = retry_unavailable(&never, "recording attempts' ends", || {
            s.store.task_set_status_many(&changes)
        })
        .await;
        match written {
            Ok(results) => {
                for ((_, ack), result) in batch.into_iter().zip(results) {
                    let _ = ack.send(result);
                }
            }
            Err(e) => {
                // The batch as a whole failed: try each on its own, so
                // every attempt learns its own fate.
                warn!(error = %e, "writing a batch of attempts' ends failed; writing them one by one");
                for (change, ack) in batch {
                    let result = retry_unavailable(&never, "recording an attempt's end", || {
                        s.store.task_set_status(change.clone())
                    })
                    .await;
                    let _ = ack.send(result);
                }
            }
        }
    }
}
