//! [`DaemonConfig`]: how a daemon behaves, and [`DaemonError`]: what stops
//! one from running.

use std::time::Duration;

use atp_core::{DaemonId, DeadRule, Error as StoreError, TypeName};

/// How a daemon behaves. Every duration has a default that suits one host;
/// see the field docs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The daemon's id; random when `None`.
    pub id: Option<DaemonId>,
    /// Attempts running at once (default: the number of CPUs).
    pub concurrency: usize,
    /// Narrows what the daemon claims to these types. Leave it `None` (the
    /// default) and the daemon claims every type whose handler its
    /// [`Registry`](crate::Registry) can run: registering a handler is all
    /// an embedding program needs. With a list, a type must be in it *and*
    /// have a handler here; a listed type without one is never claimed.
    pub types: Option<Vec<TypeName>>,
    /// How long an idle daemon waits before looking at the queue again
    /// (default 200 ms). An in-process wake-up cuts it short.
    pub poll_interval: Duration,
    /// How often the daemon and its running attempts heartbeat, and how
    /// often it looks for dead daemons (default 1 s).
    pub heartbeat_interval: Duration,
    /// A daemon silent this long is dead and its tasks are rescued
    /// (default 15 s; keep it several heartbeat intervals long). This is
    /// the margin for a daemon that is alive but stalled: a frozen virtual
    /// machine, a stopped process, a machine swapping hard.
    pub dead_after: Duration,
    /// A daemon silent this long *and shown gone* by the store is dead
    /// (default 3 s, three heartbeat intervals; see [`DeadRule`]): on
    /// PostgreSQL its liveness lock was freed (its connection closed, as a
    /// killed process's does), on SQLite its process id is gone from this
    /// host. A stalled daemon is never shown gone, so this cannot take a
    /// live daemon's tasks for the length of a stall; it can only if the
    /// daemon lost every connection to the database for this long (then its
    /// attempts can report nothing anyway). Keep it at least three
    /// heartbeat intervals, and the same on every daemon of a database.
    pub gone_after: Duration,
    /// How often the clean-up runs (default 10 s, with jitter).
    pub cleanup_interval: Duration,
    /// How long a graceful shutdown lets running attempts finish
    /// (default 30 s).
    pub grace_period: Duration,
    /// Retired tasks deleted per statement (default 1,000).
    pub retire_batch: u32,
    /// Whether this daemon enqueues the occurrences of schedules (default
    /// on: every daemon may, exactly once between them; off for a daemon
    /// that should only run tasks).
    pub schedules: bool,
    /// How long an `exec:` program whose task an operator cancelled has to
    /// exit after SIGTERM before its whole process group is SIGKILLed
    /// (default 5 s: enough to flush and remove temporary files, short
    /// enough that a cancel is felt at once).
    pub cancel_grace: Duration,
}

impl DaemonConfig {
    /// The default [`DaemonConfig::dead_after`]: `atp cleanup` uses it too.
    pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(15);

    /// The default [`DaemonConfig::gone_after`]: `atp cleanup` uses it too.
    pub const DEFAULT_GONE_AFTER: Duration = Duration::from_secs(3);

    /// The default [`DaemonConfig::retire_batch`]: `atp cleanup` uses it too.
    pub const DEFAULT_RETIRE_BATCH: u32 = 1_000;

    /// The default [`DaemonConfig::cancel_grace`].
    pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(5);
}

impl DaemonConfig {
    /// When this daemon takes another for dead: [`DaemonConfig::dead_after`]
    /// for any, [`DaemonConfig::gone_after`] (at most `dead_after`) for one
    /// shown gone.
    pub fn dead_rule(&self) -> DeadRule {
        DeadRule::silent_for(self.dead_after.as_secs_f64())
            .gone_after(self.gone_after.min(self.dead_after).as_secs_f64())
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            id: None,
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            types: None,
            poll_interval: Duration::from_millis(200),
            heartbeat_interval: Duration::from_secs(1),
            dead_after: Self::DEFAULT_DEAD_AFTER,
            gone_after: Self::DEFAULT_GONE_AFTER,
            cleanup_interval: Duration::from_secs(10),
            grace_period: Duration::from_secs(30),
            retire_batch: Self::DEFAULT_RETIRE_BATCH,
            schedules: true,
            cancel_grace: Self::DEFAULT_CANCEL_GRACE,
        }
    }
}

/// Errors that stop a daemon (everything else is logged and retried).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The configuration cannot work.
    #[error("invalid daemon configuration: {0}")]
    Config(String),
    /// The daemon could not record itself in the database.
    #[error("registering the daemon: {0}")]
    Register(#[source] StoreError),
}
