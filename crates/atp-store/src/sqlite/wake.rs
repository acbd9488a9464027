//! Wake-ups: an in-process signal, since SQLite has none across processes.
//!
//! Every handle on one file in this process shares one [`Signals`] (found
//! through [`WAKERS`], keyed by the canonical path): every committed
//! write that puts tasks into ACCEPTED wakes the waiters of its [`Notify`],
//! and every committed cancellation of a held task is told to the watches
//! of its [`CancelHub`] (a daemon in another process hears of it at its
//! next heartbeat, which the CANCELLED task refuses). A producer in
//! another process wakes nobody here: idle daemons of this process find its
//! tasks when their wait times out (they poll). In-memory databases are
//! private to one handle and its clones, so each has a `Notify` of its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use tokio::sync::Notify;

use crate::cancel_hub::CancelHub;

/// What the handles on one database in this process tell each other.
#[derive(Debug)]
pub(super) struct Signals {
    /// Tasks entered the queue.
    pub(super) tasks: Notify,
    /// Held tasks were cancelled.
    pub(super) cancelled: CancelHub,
}

impl Signals {
    fn new() -> Self {
        Signals {
            tasks: Notify::new(),
            cancelled: CancelHub::new(),
        }
    }
}

/// The signals of each file open in this process, by canonical path. An
/// entry lives as long as a handle on the file does.
static WAKERS: LazyLock<Mutex<HashMap<PathBuf, Weak<Signals>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The signals every handle on the file at `path` shares. Call once the file
/// exists (canonicalizing resolves it; a path that cannot be resolved is
/// used as given).
pub(super) fn for_file(path: &Path) -> Arc<Signals> {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut wakers = WAKERS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(notify) = wakers.get(&key).and_then(Weak::upgrade) {
        return notify;
    }
    wakers.retain(|_, w| w.strong_count() > 0);
    let signals = Arc::new(Signals::new());
    wakers.insert(key, Arc::downgrade(&signals));
    signals
}

/// The signals of a private in-memory database.
pub(super) fn for_memory() -> Arc<Signals> {
    Arc::new(Signals::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_on_one_file_share_a_signal_and_entries_go_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite");
        std::fs::write(&path, b"").unwrap();
        let a = for_file(&path);
        let b = for_file(&dir.path().join(".").join("a.sqlite"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &for_memory()));
        drop((a, b));
        let other = dir.path().join("b.sqlite");
        std::fs::write(&other, b"").unwrap();
        let _b = for_file(&other);
        let wakers = WAKERS.lock().unwrap();
        let key = std::fs::canonicalize(&path).unwrap();
        assert!(!wakers.contains_key(&key), "a dead entry is pruned");
    }
}
