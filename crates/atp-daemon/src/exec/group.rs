//! The program's process group: asked to stop (SIGTERM) when its task is
//! cancelled, killed as one, once.

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;
use tracing::warn;

/// The program's process group, whose id is the program's pid. It is
/// killed once: SIGKILL cannot be caught, so nothing of it is left after,
/// and not signalling the id again avoids hitting a reused one.
pub(super) struct Group(Option<Pid>);

impl Group {
    pub(super) fn of(child: &Child) -> Self {
        Group(
            child
                .id()
                .and_then(|pid| i32::try_from(pid).ok())
                .map(Pid::from_raw),
        )
    }

    /// Sends SIGTERM to every process in the group (an operator cancelled
    /// the task: let the program clean up). Nothing once the group was
    /// killed; a group already gone is fine.
    pub(super) fn terminate(&self) {
        let Some(pgid) = self.0 else {
            return;
        };
        match killpg(pgid, Signal::SIGTERM) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                warn!(pgid = pgid.as_raw(), error = %e, "exec: signalling the process group failed");
            }
        }
    }

    /// SIGKILLs every process in the group, unless that was done already
    /// (then returns false). A group already gone is fine.
    pub(super) fn kill(&mut self) -> bool {
        let Some(pgid) = self.0.take() else {
            return false;
        };
        match killpg(pgid, Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                warn!(pgid = pgid.as_raw(), error = %e, "exec: killing the process group failed");
            }
        }
        true
    }
}

impl Drop for Group {
    /// If the handler is dropped mid-way (the daemon gave up waiting for
    /// it), the program's group still goes.
    fn drop(&mut self) {
        self.kill();
    }
}
