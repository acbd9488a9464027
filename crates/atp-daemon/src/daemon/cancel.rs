//! Hearing cancellations: an operator's `task_cancel` makes a held task
//! CANCELLED at once and fences this daemon's attempt out; this loop
//! hears of it through the store's [`CancelWatch`] (a PostgreSQL
//! notification from any host, SQLite's in-process signal) and stops the
//! attempt: its cancellation token fires, an `exec:` program gets SIGTERM
//! and then its group SIGKILL after the daemon's `cancel_grace`, and
//! nothing of the attempt is written (the settle sees it lost).
//!
//! The watch only hurries things: a cancel this daemon cannot hear (made by
//! another process on SQLite, or while the listener reconnected) is found
//! by the next heartbeat, which the CANCELLED task refuses
//! (`heartbeat::refused` reads it back and stops the attempt the same
//! way). When the watch says it may have missed notices, every held task
//! is heartbeated at once.

use std::sync::Arc;

use atp_core::{CancelNotice, CancelWatch, Store, TaskId};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::{Shared, heartbeat};

/// Stops attempts whose tasks are cancelled, as the watch tells, until
/// `stop`.
pub(super) async fn cancel_loop<S: Store>(
    s: Arc<Shared<S>>,
    mut watch: CancelWatch,
    stop: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            notice = watch.next() => notice,
            () = stop.cancelled() => return,
        };
        match notice {
            Some(CancelNotice::Cancelled(task)) => cancelled(&s, task),
            Some(CancelNotice::Missed) => heartbeat::heartbeat_holds(&s).await,
            None => {
                debug!("the store's cancellation watch ended; heartbeats still find cancels");
                return;
            }
        }
    }
}

/// An operator cancelled `task`, which this daemon holds (or held).
pub(super) fn cancelled<S>(s: &Shared<S>, task: TaskId) {
    if let Some(run) = s.running.lock().expect("running map").get(&task) {
        if !run.ctx.settled() {
            info!(task = %task, "the task was cancelled by an operator; stopping its attempt");
            run.ctx.mark_cancelled();
        }
        return;
    }
    // Claimed ahead and waiting for a slot: its attempt is stopped as soon
    // as it is made (see `attempt::spawn_attempt`).
    if s.buffered.lock().expect("buffer").contains_key(&task) {
        s.cancelled_ahead
            .lock()
            .expect("cancelled ahead")
            .insert(task);
    }
}
