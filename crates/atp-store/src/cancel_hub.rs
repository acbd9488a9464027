//! The in-process side of [`Store::task_cancelled_watch`]: one broadcast per
//! database handle (per file on SQLite), on which the engine puts every
//! cancellation of a held task it hears of, and from which each watch takes
//! those of its holder. Both engines use it; they differ in how a notice
//! gets here (SQLite: the cancel's own commit in this process; PostgreSQL:
//! the listener connection's notification from any process).
//!
//! [`Store::task_cancelled_watch`]: atp_core::Store::task_cancelled_watch

use std::future::Future;
use std::pin::Pin;

use atp_core::{CancelFeed, CancelNotice, CancelWatch, DaemonId, TaskId};
use tokio::sync::broadcast;

/// Notices buffered per watch before a slow one is told it missed some
/// (it then checks all its tasks, so nothing is lost but the hurry).
const BUFFERED: usize = 1024;

/// What the engine heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    /// `task`, held by `holder`, was cancelled.
    Cancelled { holder: DaemonId, task: TaskId },
    /// Notices may have been lost (a listener reconnected).
    Missed,
}

/// One handle's cancellation notices, shared by its clones.
#[derive(Debug)]
pub(crate) struct CancelHub {
    heard: broadcast::Sender<Heard>,
}

impl CancelHub {
    pub(crate) fn new() -> Self {
        CancelHub {
            heard: broadcast::channel(BUFFERED).0,
        }
    }

    /// Tells the watches of `holder` that `task` was cancelled. Nobody
    /// watching is fine.
    pub(crate) fn cancelled(&self, holder: DaemonId, task: TaskId) {
        let _ = self.heard.send(Heard::Cancelled { holder, task });
    }

    /// Tells every watch that notices may have been lost.
    pub(crate) fn missed(&self) {
        let _ = self.heard.send(Heard::Missed);
    }

    /// A watch of `holder`'s cancellations from now on.
    pub(crate) fn watch(&self, holder: DaemonId) -> CancelWatch {
        CancelWatch::new(Feed {
            heard: self.heard.subscribe(),
            holder,
        })
    }
}

struct Feed {
    heard: broadcast::Receiver<Heard>,
    holder: DaemonId,
}

impl CancelFeed for Feed {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<CancelNotice>> + Send + '_>> {
        Box::pin(async move {
            loop {
                match self.heard.recv().await {
                    Ok(Heard::Cancelled { holder, task }) if holder == self.holder => {
                        return Some(CancelNotice::Cancelled(task));
                    }
                    Ok(Heard::Cancelled { .. }) => {}
                    Ok(Heard::Missed) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Some(CancelNotice::Missed);
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watch_hears_its_holder_s_cancellations_and_misses() {
        let hub = CancelHub::new();
        let (mine, other) = (DaemonId(1), DaemonId(2));
        let mut watch = hub.watch(mine);
        hub.cancelled(other, TaskId(5));
        hub.cancelled(mine, TaskId(6));
        hub.missed();
        assert_eq!(watch.next().await, Some(CancelNotice::Cancelled(TaskId(6))));
        assert_eq!(watch.next().await, Some(CancelNotice::Missed));
        for n in 0..(BUFFERED as i64 + 1) {
            hub.cancelled(mine, TaskId(n));
        }
        assert_eq!(
            watch.next().await,
            Some(CancelNotice::Missed),
            "fell behind"
        );
        drop(hub);
        while let Some(notice) = watch.next().await {
            assert!(matches!(notice, CancelNotice::Cancelled(_)));
        }
    }
}
