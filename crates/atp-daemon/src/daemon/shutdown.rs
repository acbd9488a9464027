//! [`Shutdown`]: how a program asks a daemon to stop, and
//! [`shutdown_on_signals`], the one driven by SIGINT and SIGTERM.

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Asks a daemon to stop: [`Shutdown::stop`] stops claiming and lets
/// running attempts finish within the grace period; [`Shutdown::abort`]
/// cancels them at once. Either way every task ends back in the queue or
/// settled. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    pub(super) graceful: CancellationToken,
    pub(super) hard: CancellationToken,
}

impl Shutdown {
    /// A handle that nothing has triggered yet.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Graceful stop.
    pub fn stop(&self) {
        self.graceful.cancel();
    }

    /// Immediate stop (implies [`Shutdown::stop`]).
    pub fn abort(&self) {
        self.graceful.cancel();
        self.hard.cancel();
    }

    /// Whether a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        self.graceful.is_cancelled()
    }

    /// Resolves when a stop is asked for (graceful or abort).
    pub async fn stopping(&self) {
        self.graceful.cancelled().await;
    }
}

/// A [`Shutdown`] driven by SIGINT and SIGTERM: the first signal stops
/// gracefully, the second aborts.
pub fn shutdown_on_signals() -> Shutdown {
    use tokio::signal::unix::{SignalKind, signal};
    let shutdown = Shutdown::new();
    let handle = shutdown.clone();
    // The handlers are installed here, before this returns, not in the
    // spawned task: a signal that came before that task first ran would
    // otherwise find no handler and kill the process with its default
    // action instead of stopping it.
    let streams = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = streams else {
            error!("cannot listen for SIGINT/SIGTERM; stop the daemon with SIGKILL");
            return;
        };
        for round in 0..2 {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if round == 0 {
                info!("signal received: stopping gracefully (send another to abort)");
                handle.stop();
            } else {
                warn!("second signal: aborting running attempts");
                handle.abort();
            }
        }
    });
    shutdown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_implies_stop_and_stop_alone_is_graceful() {
        let s = Shutdown::new();
        assert!(!s.is_stopping());
        s.stop();
        assert!(s.is_stopping());
        assert!(!s.hard.is_cancelled(), "a stop is not an abort");
        let a = Shutdown::new();
        a.abort();
        assert!(a.is_stopping() && a.hard.is_cancelled());
    }
}
