//! Showing a daemon's process gone: one session-level advisory lock per
//! daemon registered through a handle, held on the handle's listener
//! connection (`wake.rs`).
//!
//! The server frees a session's advisory locks the moment its connection
//! closes, and a killed process's connections close with it (the kernel
//! closes the socket; the server sees the end of the stream at once). A
//! reaper that finds a daemon's lock free and the daemon silent for the
//! short threshold ([`atp_core::DeadRule::gone_secs`]) may therefore
//! rescue its tasks at once, instead of waiting the long one. A daemon
//! that is merely stalled keeps its connection open and its lock held.
//!
//! The lock's key is two `int4`s: `hashtext` of the schema the connection
//! works in (so daemons of different schemas on one server never share a
//! key) and the low 32 bits of the daemon id. Two live daemons sharing the
//! low bits make each other look alive to the short rule: the long one
//! still reaps them.
//!
//! The listener takes the locks after every (re)connection and whenever
//! the set of registered daemons changes ([`Liveness::sync`]), and says
//! which it holds; [`Liveness::hold`] waits for that before the record is
//! marked as checkable (`atp_daemon.liveness`, migration 0012).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// How long a registration waits for its lock before leaving the daemon
/// to the long threshold alone.
const HOLD_WAIT: Duration = Duration::from_secs(5);

/// The key of a daemon's lock, both halves as the statement takes them.
pub(super) const LOCK: &str =
    "SELECT pg_try_advisory_lock(hashtext(coalesce(current_schema(), '')), $1::int4)";
const UNLOCK: &str =
    "SELECT pg_advisory_unlock(hashtext(coalesce(current_schema(), '')), $1::int4)";

/// Whether a daemon's lock is held by anyone, in the form the reaper's
/// statement embeds (`d` is the daemon's row).
pub(super) const LOCK_FREE: &str = "NOT EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = hashtext(coalesce(current_schema(), ''))::oid
      AND l.objid::int8 = (d.id & 4294967295))";

/// The lock key's second half: the daemon id's low 32 bits.
fn key(id: i64) -> i32 {
    id as u32 as i32
}

/// One handle's registered daemons and the locks its listener holds.
pub(super) struct Liveness {
    /// Daemons registered through this handle (ids as stored).
    wanted: Mutex<BTreeSet<i64>>,
    /// Told when `wanted` changes; keeps a permit, so no change is missed.
    changed: Notify,
    /// The locks the listener's current connection holds.
    held: watch::Sender<BTreeSet<i64>>,
}

impl Liveness {
    pub(super) fn new() -> Self {
        Liveness {
            wanted: Mutex::new(BTreeSet::new()),
            changed: Notify::new(),
            held: watch::channel(BTreeSet::new()).0,
        }
    }

    /// Asks the listener to hold `id`'s lock and waits until it does;
    /// `false` when it does not within [`HOLD_WAIT`] (no connection, or the
    /// key is taken).
    pub(super) async fn hold(&self, id: i64) -> bool {
        let mut held = self.held.subscribe();
        self.wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        self.changed.notify_one();
        tokio::time::timeout(HOLD_WAIT, held.wait_for(|held| held.contains(&id)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Asks the listener to let `id`'s lock go (a clean shutdown).
    pub(super) fn release(&self, id: i64) {
        self.wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.changed.notify_one();
    }

    /// Resolves when the set of registered daemons changed.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// A new connection holds nothing yet.
    pub(super) fn lost(&self) {
        self.held.send_replace(BTreeSet::new());
    }

    /// Takes the locks of registered daemons that `client`'s session does
    /// not hold yet, lets go of those no longer registered, and publishes
    /// what it holds.
    pub(super) async fn sync(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<(), tokio_postgres::Error> {
        let wanted = self
            .wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let before = self.held.borrow().clone();
        let mut held = before.clone();
        for &id in before.difference(&wanted) {
            client.query_one(UNLOCK, &[&key(id)]).await?;
            held.remove(&id);
        }
        for &id in wanted.difference(&before) {
            let locked: bool = client.query_one(LOCK, &[&key(id)]).await?.try_get(0)?;
            if locked {
                held.insert(id);
            } else {
                tracing::warn!(
                    daemon = %atp_core::DaemonId::from_db(id),
                    "another session holds this daemon's liveness lock (a live daemon with the same low id bits?): it is reaped by the long silence threshold only"
                );
            }
        }
        self.held.send_replace(held);
        Ok(())
    }
}
