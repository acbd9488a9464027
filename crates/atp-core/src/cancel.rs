//! How a daemon hears that an operator cancelled a task it holds.
//!
//! [`Store::task_cancel`](crate::Store::task_cancel) makes a held task
//! CANCELLED at once and fences its attempt out; the holder still has to
//! *hear* of it to stop the handler. Each engine tells it its own way
//! (PostgreSQL: a notification sent in the cancel's own transaction;
//! SQLite: an in-process signal), and delivers it through a [`CancelWatch`]
//! that the daemon takes once, at start, with
//! [`Store::task_cancelled_watch`](crate::Store::task_cancelled_watch).
//!
//! The watch is a hint, not the record: a notice can be lost (a listener
//! connection that dropped, a cancel made by another process on SQLite,
//! a reader that fell behind), so the daemon's heartbeat, which a CANCELLED
//! task refuses, remains the guarantee. When the engine knows it may have
//! missed notices it says so ([`CancelNotice::Missed`]), and the daemon
//! checks every task it holds at once instead of at its next heartbeat.
//!
//! The type lives here, with core types only, so the `Store` trait does not
//! name an async runtime; the engines wrap their channel in a [`CancelFeed`].

use std::future::Future;
use std::pin::Pin;

use crate::id::TaskId;

/// What a [`CancelWatch`] hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelNotice {
    /// This task, held by the watching daemon, was cancelled.
    Cancelled(TaskId),
    /// Notices may have been lost (the engine reconnected, or the reader
    /// fell behind): check every held task.
    Missed,
}

/// The engine's side of a [`CancelWatch`].
pub trait CancelFeed: Send {
    /// The next notice, or `None` once the store handle is gone (no more
    /// notices will come).
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<CancelNotice>> + Send + '_>>;
}

/// Cancellations of the tasks one holder holds, from the moment the watch
/// was taken (see the module docs for what it promises).
pub struct CancelWatch(Box<dyn CancelFeed>);

impl CancelWatch {
    /// Wraps an engine's feed.
    pub fn new(feed: impl CancelFeed + 'static) -> Self {
        CancelWatch(Box::new(feed))
    }

    /// A watch that never hears anything (an engine with no signal).
    pub fn never() -> Self {
        struct Never;
        impl CancelFeed for Never {
            fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<CancelNotice>> + Send + '_>> {
                Box::pin(std::future::pending())
            }
        }
        CancelWatch::new(Never)
    }

    /// The next notice; `None` when no more will come.
    pub async fn next(&mut self) -> Option<CancelNotice> {
        self.0.next().await
    }
}

impl std::fmt::Debug for CancelWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CancelWatch")
    }
}
