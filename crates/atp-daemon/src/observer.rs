//! [`Observer`]: a hook that hears about attempts as the daemon runs them,
//! so that a program embedding the daemon can keep metrics (a server
//! exporting Prometheus counters, say) without the daemon knowing about
//! them. Give one to [`Daemon::with_observer`](crate::Daemon::with_observer).

use atp_core::{StartedTask, Status, TypeName};

/// Hears about attempts as the daemon runs them. Methods must be cheap and
/// must not block (they run on the daemon's tasks).
///
/// Every attempt the daemon starts is reported once by
/// [`Observer::attempt_started`]; every attempt whose end is written (by the
/// daemon, or by the handler itself through
/// [`TaskContext::finish`](crate::TaskContext::finish) or
/// [`TaskContext::fail`](crate::TaskContext::fail)) is reported once by
/// [`Observer::attempt_settled`]. An attempt that loses its task (rescued
/// elsewhere) or whose end cannot be written is started but never settled.
pub trait Observer: Send + Sync + 'static {
    /// An attempt started (after the store recorded the start).
    ///
    /// Called as soon as the claim that started the task returns, for each
    /// task in it, including tasks claimed ahead that wait for a free slot
    /// before their handler runs; `task.enqueued_at` tells the pick-up
    /// latency.
    fn attempt_started(&self, task: &StartedTask) {
        let _ = task;
    }

    /// An attempt's end was written: `status` is FINISHED, FAILED or
    /// ACCEPTED (handed back / re-queued after a timeout). A hand-back of a
    /// task that has used all its starts is reported FAILED, as the store
    /// writes it.
    fn attempt_settled(&self, task_type: &TypeName, status: Status) {
        let _ = (task_type, status);
    }
}
