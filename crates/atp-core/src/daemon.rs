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
