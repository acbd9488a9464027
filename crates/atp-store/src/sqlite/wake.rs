//! Wake-ups: an in-process signal, and a watcher for other processes.
//!
//! Every handle on one file in this process shares one [`Signals`] (found
//! through [`WAKERS`], keyed by the canonical path): every committed
//! write that puts tasks into ACCEPTED wakes the waiters of its [`Notify`],
//! and every committed cancellation of a held task is told to the watches
//! of its [`CancelHub`] (a daemon in another process hears of it at its
//! next heartbeat, which the CANCELLED task refuses).
//!
//! SQLite tells no process of another's commits. From the first
//! [`Store::wait_for_tasks`](atp_core::Store::wait_for_tasks) on a file, a
//! watcher thread of this process reads `PRAGMA data_version` on a
//! connection of its own every [`WATCH_WAITING`] while a handle waits
//! (every [`WATCH_IDLE`] while none does): the number changes when any
//! other connection committed. It then reads the queue's `in` counter,
//! which every entry into ACCEPTED raises (`task.rs: count_in`), and wakes
//! the waiters when it rose: an idle daemon starts a task another process
//! enqueued within a few milliseconds instead of at its next poll. Each
//! look is a pragma on an open connection (microseconds), never a scan.
//! The thread ends once the last handle on the file is gone. In-memory
//! databases are private to one handle and its clones, so each has a
//! `Notify` of its own and no watcher.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Notify;

use crate::cancel_hub::CancelHub;

/// How often the watcher looks for other processes' commits while a
/// handle of this process waits for tasks.
const WATCH_WAITING: Duration = Duration::from_millis(2);
/// How often it looks while none waits (keeping its last reading fresh,
/// so a commit made just before a wait begins still wakes it).
const WATCH_IDLE: Duration = Duration::from_millis(50);

/// What the handles on one database in this process tell each other.
#[derive(Debug)]
pub(super) struct Signals {
    /// Tasks entered the queue.
    pub(super) tasks: Notify,
    /// Held tasks were cancelled.
    pub(super) cancelled: CancelHub,
    /// Waits for tasks in progress on this file in this process.
    waiting: AtomicUsize,
    /// Whether the watcher of other processes' commits was started.
    watching: AtomicBool,
}

impl Signals {
    fn new() -> Self {
        Signals {
            tasks: Notify::new(),
            cancelled: CancelHub::new(),
            waiting: AtomicUsize::new(0),
            watching: AtomicBool::new(false),
        }
    }

    /// Counts a wait for tasks while the returned guard lives, and starts
    /// the watcher of other processes' commits on the file at `path` (none
    /// for an in-memory database) unless it runs.
    pub(super) fn waiting(self: &Arc<Self>, path: Option<&Path>) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        if let Some(path) = path
            && !self.watching.swap(true, Ordering::SeqCst)
        {
            let signals = Arc::downgrade(self);
            let path = path.to_owned();
            let started = std::thread::Builder::new()
                .name("atp-sqlite-watch".into())
                .spawn(move || watch(&signals, &path));
            if let Err(e) = started {
                tracing::warn!(error = %e, "could not start the watcher of other processes' commits; idle daemons poll");
            }
        }
        Waiting(self)
    }
}

/// One wait for tasks, counted while it lives.
pub(super) struct Waiting<'a>(&'a Signals);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The watcher's reading: the data version, and the queue's `in` counter.
fn read(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let version = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
    let entered = conn.query_row(
        "SELECT value FROM atp_queue_counter WHERE name = 'in'",
        [],
        |r| r.get(0),
    )?;
    Ok((version, entered))
}

/// Watches the file for commits of other connections until the last
/// handle on it is gone; wakes the waiters when tasks entered the queue.
fn watch(signals: &Weak<Signals>, path: &Path) {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match Connection::open_with_flags(path, flags) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "could not open the database to watch other processes' commits; idle daemons poll");
            return;
        }
    };
    let mut last = read(&conn).ok();
    loop {
        let pause = match signals.upgrade() {
            Some(s) if s.waiting.load(Ordering::SeqCst) > 0 => WATCH_WAITING,
            Some(_) => WATCH_IDLE,
            None => return,
        };
        std::thread::sleep(pause);
        let Ok(version) = conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)) else {
            continue;
        };
        if last.is_some_and(|(seen, _)| seen == version) {
            continue;
        }
        // A busy or failed read leaves `last` as it was: looked at again.
        let Ok(now) = read(&conn) else {
            continue;
        };
        let rose = last.is_none_or(|(_, entered)| now.1 > entered);
        last = Some(now);
        if rose && let Some(s) = signals.upgrade() {
            s.tasks.notify_waiters();
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
    use crate::sqlite::SqliteStore;
    use atp_core::{Store, StoreOptions};

    /// A commit by a connection this process's handles do not know of (as
    /// another process's would be) wakes a waiting handle once it raises
    /// the queue's `in` counter, and not before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_connections_entry_into_the_queue_wakes_a_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watched.sqlite");
        let store = SqliteStore::open_file(&path, false, StoreOptions::default())
            .await
            .unwrap();
        let waiter = tokio::spawn({
            let store = store.clone();
            async move {
                store.wait_for_tasks(Duration::from_secs(30)).await;
            }
        });
        crate::testing::eventually(Duration::from_secs(5), "the wait to begin", || async {
            (store.inner.wake.waiting.load(Ordering::SeqCst) > 0).then_some(())
        })
        .await;
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("UPDATE atp_queue_counter SET value = value + 1 WHERE name = 'out'")
            .unwrap();
        // That nothing wakes can only be watched for a while: a deadline.
        let mut waiter = waiter;
        tokio::time::timeout(Duration::from_millis(300), &mut waiter)
            .await
            .expect_err("woken by a commit that queued nothing");
        other
            .execute_batch("UPDATE atp_queue_counter SET value = value + 1 WHERE name = 'in'")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by another connection's entry into the queue")
            .unwrap();
    }

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
