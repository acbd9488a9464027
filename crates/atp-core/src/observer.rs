//! [`Observer`]: a hook that hears about attempts as a daemon runs them, so
//! that a program embedding the daemon can keep metrics (a server exporting
//! Prometheus counters, say) without the daemon knowing about them, and
//! without the metrics knowing about the daemon: both sides meet here, in
//! the core, so the server crate does not depend on the daemon crate.

use crate::{Attempt, StartedTask, Status, TypeName};

/// An attempt whose end was written, as an [`Observer`] hears of it.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct AttemptSettled<'a> {
    /// The hold the end was written under: the task, its holder and lease.
    pub attempt: Attempt,
    /// Which start of the task this attempt was (1 for the first run).
    pub start: u32,
    /// The task's type.
    pub task_type: &'a TypeName,
    /// The status written: FINISHED, FAILED, or ACCEPTED (handed back or
    /// re-queued after a timeout). A hand-back of a task that has used all
    /// its starts is reported FAILED, as the store writes it. CANCELLED in
    /// [`Observer::attempt_cancelled`].
    pub status: Status,
    /// Whether the status is ACCEPTED because a failure is retried (after
    /// the type's back-off or the handler's delay), rather than a hand-back.
    pub retried: bool,
}

impl<'a> AttemptSettled<'a> {
    /// The end of `attempt` (its `start`-th run, of type `task_type`),
    /// written as `status`.
    pub fn new(attempt: Attempt, start: u32, task_type: &'a TypeName, status: Status) -> Self {
        AttemptSettled {
            attempt,
            start,
            task_type,
            status,
            retried: false,
        }
    }

    /// The same end, marked as a failure that is retried.
    pub fn retried(mut self, retried: bool) -> Self {
        self.retried = retried;
        self
    }
}

/// Hears about attempts as a daemon runs them. Methods must be cheap and
/// must not block (they run on the daemon's tasks).
///
/// Every attempt the daemon starts is reported once by
/// [`Observer::attempt_started`]; every attempt whose end is written (by the
/// daemon, or by the handler itself through its context's `finish` or
/// `fail`) is reported once by [`Observer::attempt_settled`]. An attempt
/// that loses its task (rescued elsewhere) or whose end cannot be written
/// is started but never settled; one stopped because an operator cancelled
/// its task is reported once by [`Observer::attempt_cancelled`] instead.
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

    /// An attempt's end was written (see [`AttemptSettled`]).
    fn attempt_settled(&self, settled: &AttemptSettled<'_>) {
        let _ = settled;
    }

    /// An attempt stopped because an operator cancelled its task (the
    /// store wrote CANCELLED; `cancelled.status` says so). Reported once
    /// its handler is done, by the daemon that ran it.
    fn attempt_cancelled(&self, cancelled: &AttemptSettled<'_>) {
        let _ = cancelled;
    }
}
