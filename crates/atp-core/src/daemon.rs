//! Daemon records: who is alive and holds tasks.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::id::DaemonId;
use crate::task::Rescued;

/// A daemon as it records itself.
///
/// Written by the daemon at start and at each heartbeat; read by operators
/// and by every daemon's clean-up, which rescues the tasks of daemons whose
/// heartbeat stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Random 64-bit id, printed as `0x%016X`.
    pub id: DaemonId,
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Its last heartbeat (set by the store).
    #[serde(with = "time::serde::rfc3339")]
    pub heartbeat_at: OffsetDateTime,
    /// The handler names it can run.
    pub handlers: Vec<String>,
}

/// What reaping one dead daemon did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReapedDaemon {
    /// The daemon whose record was removed.
    pub id: DaemonId,
    /// The tasks it held, now re-enqueued or FAILED.
    pub rescued: Vec<Rescued>,
}

/// When [`Store::daemon_reap_dead`](crate::Store::daemon_reap_dead) takes a
/// daemon for dead: two thresholds of silence (time since its last
/// heartbeat).
///
/// `silent_secs` is the rule for any daemon: silent that long, it is dead
/// (a stall that long is treated as death: its attempts are rescued and it
/// stops them when it hears). `gone_secs`, shorter, applies only to a
/// daemon whose process the store can show to be gone: on PostgreSQL, the
/// session-level advisory lock its store handle takes for it is free (the
/// server frees it the moment the connection closes, which a killed
/// process's connection does), on SQLite, it runs on this host and its
/// process id is gone. A daemon that is merely stalled (a frozen machine, a
/// stopped process, a long pause) keeps its connection and its process, so
/// it is judged by `silent_secs` alone: the short threshold cannot take a
/// live daemon's tasks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeadRule {
    /// Silence after which any daemon is dead.
    pub silent_secs: f64,
    /// Silence after which a daemon shown gone is dead (at most
    /// `silent_secs`).
    pub gone_secs: f64,
    /// The daemon that reaps, never taken for dead by its own reap: it is
    /// plainly alive, and a daemon whose heartbeats failed for long (a
    /// full disk on the server, say) while its reap went through would
    /// otherwise drop its own attempts.
    pub spare: Option<crate::DaemonId>,
}

impl DeadRule {
    /// Only the one threshold: `silent_secs` for every daemon.
    pub fn silent_for(silent_secs: f64) -> Self {
        DeadRule {
            silent_secs,
            gone_secs: silent_secs,
            spare: None,
        }
    }

    /// The rule with a shorter threshold for daemons shown gone.
    pub fn gone_after(self, gone_secs: f64) -> Self {
        DeadRule { gone_secs, ..self }
    }

    /// The rule as the daemon `reaper` applies it: never to itself.
    pub fn sparing(self, reaper: crate::DaemonId) -> Self {
        DeadRule {
            spare: Some(reaper),
            ..self
        }
    }
}
