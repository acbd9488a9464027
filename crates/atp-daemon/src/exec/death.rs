//! An `exec:` program dies with its daemon.
//!
//! A daemon killed with SIGKILL cannot stop its programs, and a program
//! that outlives it keeps working on a task that the daemon's rescue puts
//! back in the queue: two attempts' side effects overlap. On Linux the
//! kernel can send a signal to a process when its parent goes
//! (`PR_SET_PDEATHSIG`); the program asks for SIGKILL between `fork` and
//! `exec`, so even one that ignores SIGTERM goes at once.
//!
//! Limits: the signal reaches the program itself, not processes it forked
//! (a program that starts children should end them when it ends, or make
//! them read its pipes); and it fires when the *thread* that forked ends,
//! which for a tokio runtime's worker threads is when the runtime ends,
//! that is, with the daemon. Elsewhere than Linux nothing is set up.

use tokio::process::Command;

/// Sets up the parent-death signal for the program `cmd` starts.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(super) fn die_with_daemon(cmd: &mut Command) {
    use nix::errno::Errno;
    use nix::sys::signal::Signal;

    let daemon = nix::unistd::getpid();
    // SAFETY: `pre_exec` runs the closure in the forked child before exec,
    // where only async-signal-safe work is allowed. It makes two system
    // calls, prctl(2) and getppid(2), which take no locks and allocate
    // nothing; it reads a pid copied in before the fork; its errors are
    // built from an errno value (`io::Error::from_raw_os_error`), which
    // does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            // The daemon may have died between fork and prctl: then no
            // signal would ever come. Refuse to start instead.
            if nix::unistd::getppid() != daemon {
                return Err(std::io::Error::from_raw_os_error(Errno::ESRCH as i32));
            }
            Ok(())
        });
    }
}

/// Nothing to set up where the kernel offers no parent-death signal.
#[cfg(not(target_os = "linux"))]
pub(super) fn die_with_daemon(_cmd: &mut Command) {}
