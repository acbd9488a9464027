//! The SQLite engine: one file in WAL mode (or memory), the default.
//!
//! # Concurrency
//! All writes of one handle go through one connection behind a mutex, each
//! in a `BEGIN IMMEDIATE` transaction, so writers of one process queue in
//! memory instead of fighting over SQLite's file lock. Writers of other
//! processes wait on `busy_timeout`, and a transaction that still meets
//! `SQLITE_BUSY` is retried from the start, so "database is locked" never
//! reaches a caller. Reads use a small pool of their own connections, which
//! WAL lets run beside the writer: at most `StoreOptions::pool_size` open at
//! once (reads beyond wait for one), up to 8 of them kept while idle. [`Store::wait_for_tasks`] is woken by
//! writes of this process at once, and by other processes' within a few
//! milliseconds (a watcher thread reads `PRAGMA data_version`: `wake.rs`).
//!
//! # Durability
//! `journal_mode=WAL` with `synchronous=NORMAL` (the default): a committed
//! transaction survives a crash of the process, since it is in the WAL file
//! before commit returns; a power loss may lose the last transactions before
//! the next checkpoint. `?synchronous=full` in the URL syncs the WAL at
//! every commit and also survives power loss, at several times the cost per
//! transaction.

mod bulk;
mod cancel;
mod due;
#[cfg(test)]
mod due_plans;
mod group;
mod limit;
mod list;
mod migrate;
mod queue;
mod reap;
mod row;
mod schedule;
mod task;
mod task_type;
mod wake;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atp_core::schedule::{NewSchedule, Schedule, ScheduleFired, ScheduleName, ScheduleOccurrence};
use atp_core::store::ClaimParams;
use atp_core::{
    Attempt, BulkReenqueue, ClaimedTask, DaemonId, DaemonInfo, DeadRule, Error, LogRecord, NewTask,
    Progress, ReapedDaemon, Rescued, Response, Result, Retired, StartedTask, StatusChange, Store,
    StoreOptions, Task, TaskCounts, TaskFilter, TaskId, TaskMessagePage, TaskPage, TaskRef,
    TaskType, TypeName,
};
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use crate::input_check::{self, InputSchemas};

pub use migrate::LATEST_VERSION;

/// How long one statement waits for another process's lock before SQLite
/// reports busy (after which the whole transaction is retried).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a transaction keeps being retried while the database is busy.
const BUSY_GIVE_UP: Duration = Duration::from_secs(300);
/// Read connections kept open per handle.
const MAX_IDLE_READERS: usize = 8;

/// A handle on a SQLite database. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The one connection that writes. Held only inside `spawn_blocking`.
    writer: Mutex<Connection>,
    /// Single enqueues waiting to be committed together (`group.rs`).
    pending_enqueues: group::Pending,
    /// Idle read connections; empty and unused for in-memory databases,
    /// whose data only the writer connection can see.
    readers: Mutex<Vec<Connection>>,
    /// One permit per read connection that may be open at once
    /// ([`StoreOptions::pool_size`]); reads beyond wait for one.
    read_slots: tokio::sync::Semaphore,
    /// The file, or `None` in memory.
    path: Option<PathBuf>,
    synchronous_full: bool,
    options: StoreOptions,
    /// Wakes [`Store::wait_for_tasks`] after a commit that put tasks into
    /// ACCEPTED, and tells [`Store::task_cancelled_watch`] of cancelled
    /// held tasks; shared by every handle on the same file in this process.
    wake: Arc<wake::Signals>,
    /// The input schemas this handle checks enqueues against.
    input_schemas: InputSchemas,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up
    /// to date. Safe when several processes open a fresh file at once.
    pub async fn open_file(
        path: &Path,
        synchronous_full: bool,
        options: StoreOptions,
    ) -> Result<Self> {
        Self::open_file_at_version(path, synchronous_full, options, LATEST_VERSION).await
    }

    /// Like [`SqliteStore::open_file`], migrating only up to `version`: lets
    /// tests make a database as an older ATP left it.
    pub async fn open_file_at_version(
        path: &Path,
        synchronous_full: bool,
        options: StoreOptions,
        version: u32,
    ) -> Result<Self> {
        options.validate()?;
        let path = path.to_path_buf();
        let writer = blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::Database {
                    context: format!("creating the folder {}", dir.display()),
                    source: Box::new(e),
                })?;
            }
            let mut conn = open_connection(&path, synchronous_full)?;
            migrate::migrate(&mut conn, version)?;
            let wake = wake::for_file(&path);
            Ok((conn, path, wake))
        })
        .await?;
        let (conn, path, wake) = writer;
        let store = Self::from_writer(conn, Some(path.clone()), synchronous_full, options, wake);
        spawn_checkpointer(path, synchronous_full, Arc::downgrade(&store.inner));
        Ok(store)
    }

    /// A fresh private in-memory database, for tests and demos.
    pub async fn open_memory(options: StoreOptions) -> Result<Self> {
        options.validate()?;
        let conn = blocking(|| {
            let mut conn =
                Connection::open_in_memory().map_err(db("opening an in-memory database"))?;
            configure(&conn, false)?;
            migrate::migrate(&mut conn, LATEST_VERSION)?;
            Ok(conn)
        })
        .await?;
        Ok(Self::from_writer(
            conn,
            None,
            false,
            options,
            wake::for_memory(),
        ))
    }

    fn from_writer(
        conn: Connection,
        path: Option<PathBuf>,
        synchronous_full: bool,
        options: StoreOptions,
        wake: Arc<wake::Signals>,
    ) -> Self {
        SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(conn),
                pending_enqueues: Mutex::new(Vec::new()),
                readers: Mutex::new(Vec::new()),
                read_slots: tokio::sync::Semaphore::new(options.pool_size),
                path,
                synchronous_full,
                options,
                wake,
                input_schemas: InputSchemas::default(),
            }),
        }
    }

    /// Wakes every [`Store::wait_for_tasks`] of this process on this
    /// database: call after a commit that put tasks into ACCEPTED.
    fn tasks_entered(&self) {
        self.inner.wake.tasks.notify_waiters();
    }

    /// Passes `out` through, waking waiters when `entered` says it put
    /// tasks into ACCEPTED.
    fn waking<T>(&self, out: Result<T>, entered: impl FnOnce(&T) -> bool) -> Result<T> {
        if out.as_ref().is_ok_and(entered) {
            self.tasks_entered();
        }
        out
    }

    /// The database file, or `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction on the writer,
    /// retrying the whole of it while the database is busy. `work` gets the
    /// transaction's time, read from the handle's clock once it holds the
    /// writer (as PostgreSQL's `now()` is the start of the transaction), so
    /// times written by one handle never go backwards.
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Transaction<'_>, i64) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let mut work = work;
        blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            retry_busy(|| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db("beginning a transaction"))?;
                let out = work(&tx, inner.options.clock.now_micros())?;
                tx.commit().map_err(db("committing"))?;
                Ok(out)
            })
        })
        .await
    }

    /// Runs `work` on a read connection (the writer for in-memory databases).
    /// Reads a type's input schema again after an enqueue found it changed
    /// (`input_check.rs`).
    async fn learn_input_schema(&self, name: TypeName) -> Result<()> {
        let read = name.clone();
        match self
            .read(move |conn| task_type::input_schema(conn, &read))
            .await?
        {
            Some((about, rev)) => self.inner.input_schemas.learn(&name, &about, rev),
            None => {
                self.inner.input_schemas.forget(&name);
                Ok(())
            }
        }
    }

    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let mut work = work;
        let _slot = self
            .inner
            .read_slots
            .acquire()
            .await
            .map_err(|e| Error::Database {
                context: "waiting for a read connection".into(),
                source: Box::new(e),
            })?;
        blocking(move || {
            let Some(path) = inner.path.as_deref() else {
                let conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
                return retry_busy(|| work(&conn));
            };
            let idle = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let conn = match idle {
                Some(conn) => conn,
                None => open_connection(path, inner.synchronous_full)?,
            };
            let out = retry_busy(|| work(&conn));
            let mut readers = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
            if readers.len() < MAX_IDLE_READERS.min(inner.options.pool_size) {
                readers.push(conn);
            }
            out
        })
        .await
    }
}

/// How often the background checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Checkpoints the WAL from a thread of its own, so that commits never pay
/// for it: SQLite's automatic checkpoint runs inside the commit that fills
/// the WAL and syncs the database file there, which cost two thirds of a
/// single enqueue. Ends once the store is dropped.
fn spawn_checkpointer(path: PathBuf, synchronous_full: bool, store: std::sync::Weak<Inner>) {
    let spawned = std::thread::Builder::new()
        .name("atp-sqlite-checkpoint".into())
        .spawn(move || {
            let conn = match open_connection(&path, synchronous_full) {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the checkpoint connection; SQLite will grow its WAL until another handle checkpoints");
                    return;
                }
            };
            while store.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_EVERY);
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "WAL checkpoint failed; retrying later");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the checkpoint thread");
    }
}

/// Runs blocking SQLite work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Database {
            context: "running a SQLite call".into(),
            source: Box::new(e),
        })?
}

fn open_connection(path: &Path, synchronous_full: bool) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(db(&format!("opening {}", path.display())))?;
    configure(&conn, true)?;
    if synchronous_full {
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db("setting synchronous=FULL"))?;
    }
    Ok(conn)
}

/// Per-connection settings. WAL is a property of the file; setting it needs a
/// moment of exclusive access, so it is retried like any busy write.
fn configure(conn: &Connection, wal: bool) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(db("setting busy_timeout"))?;
    if wal {
        retry_busy(|| {
            let mode: String = conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .map_err(db("enabling WAL"))?;
            if mode.eq_ignore_ascii_case("wal") {
                Ok(())
            } else {
                Err(Error::Database {
                    context: "enabling WAL".into(),
                    source: format!("journal_mode stayed {mode}").into(),
                })
            }
        })?;
    }
    // wal_autocheckpoint=0: see spawn_checkpointer. mmap_size=0: reads
    // through SQLite's own page cache. Mapping the file (tried at 1 GiB)
    // measured no faster here and put the mapped pages in the resident set
    // of every process: a daemon draining at full speed showed 60 MB RSS
    // instead of 34 MB (BENCHMARKS.md, daemon memory).
    conn.execute_batch(
        "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; \
         PRAGMA cache_size=-16000; PRAGMA wal_autocheckpoint=0; PRAGMA mmap_size=0;",
    )
    .map_err(db("configuring the connection"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Retries `work` while it fails with SQLITE_BUSY / SQLITE_LOCKED.
fn retry_busy<T>(mut work: impl FnMut() -> Result<T>) -> Result<T> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match work() {
            Err(e) if is_busy(&e) && started.elapsed() < BUSY_GIVE_UP => {
                tracing::debug!(error = %e, "SQLite busy, retrying the transaction");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn is_busy(e: &Error) -> bool {
    let Error::Database { source, .. } = e else {
        return false;
    };
    matches!(
        source.downcast_ref::<rusqlite::Error>(),
        Some(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Maps a rusqlite error to `Error::Database` with what was being done;
/// a full disk (or a database at its page limit) is `Error::Unavailable`:
/// the transaction rolled back, nothing committed is lost, and the same
/// write succeeds once space is freed, so daemons wait and try again as
/// they do for an unreachable PostgreSQL, and a producer is told plainly.
pub(crate) fn db(context: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull => {
            Error::Unavailable {
                message: format!("the SQLite database or its disk is full while {context}"),
                source: Box::new(e),
            }
        }
        _ => Error::Database {
            context: context.to_owned(),
            source: Box::new(e),
        },
    }
}

impl Store for SqliteStore {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    fn options(&self) -> StoreOptions {
        self.inner.options.clone()
    }

    async fn wait_for_tasks(&self, within: Duration) {
        let _waiting = self.inner.wake.waiting(self.inner.path.as_deref());
        crate::shared::wait_notified(&self.inner.wake.tasks, within, || {}).await;
    }

    async fn schema_version(&self) -> Result<u32> {
        self.read(migrate::current_version).await
    }

    async fn task_next_due(&self) -> Result<Option<Duration>> {
        let clock = self.inner.options.clock.clone();
        self.read(move |conn| due::next_due(conn, clock.now_micros()))
            .await
    }

    async fn task_type_upsert(&self, task_type: &TaskType) -> Result<()> {
        task_type.validate()?;
        let t = task_type.clone();
        self.write(move |tx, now| task_type::upsert(tx, &t, now))
            .await?;
        let about = &task_type.about;
        self.inner
            .input_schemas
            .learn(&task_type.name, about, about.input_schema_rev())
    }

    async fn task_type_get(&self, name: &TypeName) -> Result<TaskType> {
        let name = name.clone();
        self.read(move |conn| task_type::get(conn, &name)).await
    }

    async fn task_type_list(&self) -> Result<Vec<TaskType>> {
        self.read(task_type::list).await
    }

    async fn task_type_set_paused(&self, name: &TypeName, paused: bool) -> Result<TaskType> {
        let name = name.clone();
        let out = self
            .write(move |tx, now| task_type::set_paused(tx, &name, paused, now))
            .await;
        // A resume makes queued tasks claimable: wake idle daemons as an
        // enqueue would.
        self.waking(out, |t| !t.paused)
    }

    async fn task_type_delete(&self, name: &TypeName, force: bool) -> Result<u64> {
        let gone = name.clone();
        let deleted = self
            .write(move |tx, _| task_type::delete(tx, &gone, force))
            .await?;
        self.inner.input_schemas.forget(name);
        Ok(deleted)
    }

    async fn task_enqueue(&self, new: NewTask) -> Result<Task> {
        let tasks = std::slice::from_ref(&new);
        let out = input_check::enqueue_checked(
            &self.inner.input_schemas,
            tasks,
            |revs| async move {
                let prepared = task::prepare(tasks, &self.inner.options, &revs)?;
                let answer = group::submit(&self.inner.pending_enqueues, prepared);
                let inner = Arc::clone(&self.inner);
                blocking(move || {
                    let mut writer = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
                    group::run_pending(&mut writer, &inner.pending_enqueues, &inner.options);
                    Ok(())
                })
                .await?;
                answer.await.unwrap_or_else(|_| {
                    Err(Error::Database {
                        context: "enqueueing".into(),
                        source: "the group commit ended without an answer".into(),
                    })
                })
            },
            |t| self.learn_input_schema(t),
        )
        .await;
        self.waking(out, |_| true)
    }

    async fn task_enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let tasks = &tasks;
        let out = input_check::enqueue_checked(
            &self.inner.input_schemas,
            tasks,
            |revs| async move {
                let prepared = task::prepare(tasks, &self.inner.options, &revs)?;
                let options = self.inner.options.clone();
                self.write(move |tx, now| task::enqueue_many(tx, &prepared, &options, now))
                    .await
            },
            |t| self.learn_input_schema(t),
        )
        .await;
        self.waking(out, |ids| !ids.is_empty())
    }

    async fn task_claim(&self, params: &ClaimParams) -> Result<Vec<ClaimedTask>> {
        let Some(params) = crate::shared::claim_params(params) else {
            return Ok(Vec::new());
        };
        let params = params.into_owned();
        self.write(move |tx, now| queue::claim(tx, &params, now))
            .await
    }

    async fn task_claim_start(&self, params: &ClaimParams) -> Result<Vec<StartedTask>> {
        let Some(params) = crate::shared::claim_params(params) else {
            return Ok(Vec::new());
        };
        let params = params.into_owned();
        self.write(move |tx, now| queue::claim_start(tx, &params, now))
            .await
    }

    async fn task_start_many(&self, attempts: &[Attempt]) -> Result<Vec<Result<StartedTask>>> {
        let attempts = attempts.to_vec();
        self.write(move |tx, now| queue::start_many(tx, &attempts, now))
            .await
    }

    async fn task_set_status_many(&self, changes: &[StatusChange]) -> Result<Vec<Result<()>>> {
        for change in changes {
            crate::shared::validate_change(change)?;
        }
        let hand_backs: Vec<bool> = changes
            .iter()
            .map(|c| c.kind() == atp_core::ChangeKind::HandBack)
            .collect();
        let changes = changes.to_vec();
        let out = self
            .write(move |tx, now| queue::set_status_many(tx, &changes, now))
            .await;
        // A hand-back may have become FAILED (starts used up): a spurious
        // wake-up at worst.
        self.waking(out, |results| {
            results
                .iter()
                .zip(&hand_backs)
                .any(|(r, &back)| back && r.is_ok())
        })
    }

    async fn task_heartbeat_many(&self, attempts: &[Attempt]) -> Result<Vec<Result<()>>> {
        let attempts = attempts.to_vec();
        self.write(move |tx, now| queue::heartbeat_many(tx, &attempts, now))
            .await
    }

    async fn task_progress(&self, attempt: Attempt, progress: &Progress) -> Result<()> {
        let progress = crate::shared::validate_progress(progress)?;
        let progress = progress.into_owned();
        self.write(move |tx, now| queue::progress(tx, attempt, &progress, now))
            .await
    }

    async fn task_response_put(&self, attempt: Attempt, response: &Response) -> Result<()> {
        atp_core::payload::validate_mime(&response.mime_type)?;
        let response = response.clone();
        self.write(move |tx, now| queue::response_put(tx, attempt, &response, now))
            .await
    }

    async fn task_get(&self, task: &TaskRef) -> Result<Task> {
        let task = task.clone();
        self.read(move |conn| task::get(conn, &task)).await
    }

    async fn task_input(&self, task: &TaskRef) -> Result<serde_json::Value> {
        let task = task.clone();
        self.read(move |conn| task::input(conn, &task)).await
    }

    async fn task_log(&self, task: &TaskRef) -> Result<Vec<LogRecord>> {
        let task = task.clone();
        self.read(move |conn| task::log(conn, &task)).await
    }

    async fn task_response_get(&self, task: &TaskRef) -> Result<Option<Response>> {
        let task = task.clone();
        self.read(move |conn| task::response_get(conn, &task)).await
    }

    async fn task_list(&self, filter: &TaskFilter) -> Result<TaskPage> {
        let filter = filter.clone();
        self.read(move |conn| list::list(conn, &filter)).await
    }

    async fn task_list_with_last_message(&self, filter: &TaskFilter) -> Result<TaskMessagePage> {
        let filter = filter.clone();
        self.read(move |conn| list::list_with_last_message(conn, &filter))
            .await
    }

    async fn task_counts(&self) -> Result<TaskCounts> {
        self.read(task::counts).await
    }

    async fn queue_size(&self) -> Result<u64> {
        self.read(task::queue_size).await
    }

    async fn task_delete(&self, task: &TaskRef) -> Result<()> {
        let task = task.clone();
        self.write(move |tx, _| task::delete(tx, &task)).await
    }

    async fn task_reenqueue(&self, task: &TaskRef, message: &str) -> Result<Task> {
        let task = task.clone();
        let message = message.to_owned();
        let out = self
            .write(move |tx, now| task::reenqueue(tx, &task, &message, now))
            .await;
        self.waking(out, |_| true)
    }

    async fn task_reenqueue_all(&self, bulk: &BulkReenqueue) -> Result<u64> {
        let bulk = bulk.clone();
        let out = self
            .write(move |tx, now| bulk::reenqueue_all(tx, &bulk, now))
            .await;
        self.waking(out, |moved| *moved > 0)
    }

    async fn task_cancel(&self, task: &TaskRef, message: Option<&str>) -> Result<Task> {
        let task = task.clone();
        let message = message.map(str::to_owned);
        let (task, held_by) = self
            .write(move |tx, now| cancel::cancel(tx, &task, message.as_deref(), now))
            .await?;
        if let Some(holder) = held_by {
            self.inner.wake.cancelled.cancelled(holder, task.id);
        }
        Ok(task)
    }

    fn task_cancelled_watch(&self, holder: DaemonId) -> atp_core::CancelWatch {
        self.inner.wake.cancelled.watch(holder)
    }

    async fn task_requeue_abandoned(&self) -> Result<Vec<Rescued>> {
        let out = self.write(reap::requeue_abandoned).await;
        self.waking(out, |rescued| requeued_any(rescued))
    }

    async fn task_delete_retired(&self, limit: u32) -> Result<Vec<Retired>> {
        self.write(move |tx, now| reap::delete_retired(tx, limit, now))
            .await
    }

    async fn daemon_register(&self, daemon: &DaemonInfo) -> Result<()> {
        let daemon = daemon.clone();
        self.write(move |tx, now| reap::daemon_register(tx, &daemon, now))
            .await
    }

    async fn daemon_heartbeat(&self, id: DaemonId) -> Result<bool> {
        self.write(move |tx, now| reap::daemon_heartbeat(tx, id, now))
            .await
    }

    async fn daemon_deregister(&self, id: DaemonId) -> Result<()> {
        self.write(move |tx, _| reap::daemon_deregister(tx, id))
            .await
    }

    async fn daemon_list(&self) -> Result<Vec<DaemonInfo>> {
        self.read(reap::daemon_list).await
    }

    async fn daemon_reap_dead(&self, rule: DeadRule) -> Result<Vec<ReapedDaemon>> {
        atp_core::decide::check_silence(&rule)?;
        let out = self
            .write(move |tx, now| reap::daemon_reap_dead(tx, rule, now))
            .await;
        self.waking(out, |reaped| {
            reaped.iter().any(|d| requeued_any(&d.rescued))
        })
    }

    async fn schedule_upsert(&self, schedule: &NewSchedule) -> Result<Schedule> {
        let prepared = crate::schedule::prepare(schedule, &self.inner.options)?;
        // Its occurrences' inputs are this one: checked once, here, against
        // the type's schema as it is now.
        self.learn_input_schema(schedule.task_type.clone()).await?;
        self.inner
            .input_schemas
            .check_input(&schedule.task_type, &schedule.input)?;
        self.write(move |tx, now| schedule::upsert(tx, &prepared, now))
            .await
    }

    async fn schedule_get(&self, name: &ScheduleName) -> Result<Schedule> {
        let name = name.clone();
        self.read(move |conn| schedule::get(conn, &name)).await
    }

    async fn schedule_list(&self) -> Result<Vec<Schedule>> {
        self.read(schedule::list).await
    }

    async fn schedule_delete(&self, name: &ScheduleName) -> Result<()> {
        let name = name.clone();
        self.write(move |tx, _| schedule::delete(tx, &name)).await
    }

    async fn schedule_set_paused(&self, name: &ScheduleName, paused: bool) -> Result<Schedule> {
        let name = name.clone();
        self.write(move |tx, now| schedule::set_paused(tx, &name, paused, now))
            .await
    }

    async fn schedule_enqueue(&self, occurrence: &ScheduleOccurrence) -> Result<ScheduleFired> {
        let occurrence = occurrence.clone();
        let options = self.inner.options.clone();
        let out = self
            .write(move |tx, now| schedule::enqueue(tx, &occurrence, &options, now))
            .await;
        self.waking(out, |f| matches!(f, ScheduleFired::Enqueued(_)))
    }
}

/// Whether a rescue put any task back into ACCEPTED.
fn requeued_any(rescued: &[Rescued]) -> bool {
    rescued
        .iter()
        .any(|r| r.outcome == atp_core::Status::Accepted)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use atp_core::{Handler, NewTask, TaskIdentifier, TaskType, TypeName};

    use super::*;

    fn sample_type() -> TaskType {
        TaskType::new(
            TypeName::new("t").unwrap(),
            Handler::new("builtin:noop").unwrap(),
        )
    }

    /// A full database (here its writer's page limit, as a full disk
    /// would) refuses a write as `Unavailable`, saying so, changes nothing,
    /// and takes the same write once there is room again.
    #[tokio::test]
    async fn a_full_disk_is_unavailable_and_the_write_succeeds_once_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.sqlite");
        let store = SqliteStore::open_file(&path, false, StoreOptions::default())
            .await
            .unwrap();
        store.task_type_upsert(&sample_type()).await.unwrap();
        let task = |n: usize| {
            NewTask::new(
                TypeName::new("t").unwrap(),
                TaskIdentifier::new(format!("big-{n}")).unwrap(),
            )
            .with_input(serde_json::json!("x".repeat(200_000)))
        };
        store.task_enqueue(task(0)).await.unwrap();
        let pages: i64 = store
            .write(|tx, _| {
                let pages: i64 = tx
                    .query_row("PRAGMA page_count", [], |r| r.get(0))
                    .map_err(db("counting pages"))?;
                tx.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(db("capping pages"))?;
                Ok(pages)
            })
            .await
            .unwrap();
        let full = store.task_enqueue(task(1)).await.unwrap_err();
        assert!(
            matches!(&full, Error::Unavailable { message, .. } if message.contains("full")),
            "{full:?}"
        );
        let counts = store.task_counts().await.unwrap();
        assert_eq!(
            counts.status(atp_core::Status::Accepted),
            1,
            "nothing half-written"
        );
        store
            .write(move |tx, _| {
                tx.query_row(
                    &format!("PRAGMA max_page_count = {}", pages * 100),
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(db("raising the page limit"))
            })
            .await
            .unwrap();
        store.task_enqueue(task(1)).await.unwrap();
        assert_eq!(
            store
                .task_counts()
                .await
                .unwrap()
                .status(atp_core::Status::Accepted),
            2
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_waits_out_another_process_lock_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.sqlite");
        let store = SqliteStore::open_file(&path, false, StoreOptions::default())
            .await
            .unwrap();
        store.task_type_upsert(&sample_type()).await.unwrap();

        // Another connection (as another process would) holds the write
        // lock for 300 ms; it says when it has it.
        let (locked, has_lock) = std::sync::mpsc::channel();
        let holder = std::thread::spawn({
            let path = path.clone();
            move || {
                let conn = Connection::open(&path).unwrap();
                conn.execute_batch("BEGIN IMMEDIATE; UPDATE atp_queue_counter SET value = value WHERE name = 'in';")
                    .unwrap();
                locked.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                conn.execute_batch("COMMIT").unwrap();
            }
        });
        has_lock.recv().unwrap();
        let started = Instant::now();
        let task = store
            .task_enqueue(NewTask::new(
                TypeName::new("t").unwrap(),
                TaskIdentifier::new("x").unwrap(),
            ))
            .await
            .expect("the lock is waited out, never reported");
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "it did wait for the lock"
        );
        assert_eq!(task.identifier.as_str(), "x");
        holder.join().unwrap();
    }

    #[test]
    fn busy_errors_are_recognised_and_others_are_not() {
        let busy = Error::Database {
            context: "x".into(),
            source: Box::new(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                None,
            )),
        };
        assert!(is_busy(&busy));
        let other = Error::Database {
            context: "x".into(),
            source: Box::new(rusqlite::Error::QueryReturnedNoRows),
        };
        assert!(!is_busy(&other));
        let mut calls = 0;
        let result: Result<u32> = retry_busy(|| {
            calls += 1;
            if calls < 3 {
                Err(Error::Database {
                    context: "x".into(),
                    source: Box::new(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        None,
                    )),
                })
            } else {
                Ok(7)
            }
        });
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn an_in_memory_database_is_private_and_complete() {
        let a = SqliteStore::open_memory(StoreOptions::default())
            .await
            .unwrap();
        let b = SqliteStore::open_memory(StoreOptions::default())
            .await
            .unwrap();
        a.task_type_upsert(&sample_type()).await.unwrap();
        assert_eq!(a.task_type_list().await.unwrap().len(), 1);
        assert!(b.task_type_list().await.unwrap().is_empty());
        assert_eq!(a.schema_version().await.unwrap(), LATEST_VERSION);
        assert_eq!(a.path(), None);
    }

    #[tokio::test]
    async fn the_file_is_in_wal_mode_with_durable_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.sqlite");
        let store = SqliteStore::open_file(&path, false, StoreOptions::default())
            .await
            .unwrap();
        let (mode, sync) = store
            .read(|conn| {
                let mode: String = conn
                    .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .map_err(db("x"))?;
                let sync: i64 = conn
                    .query_row("PRAGMA synchronous", [], |r| r.get(0))
                    .map_err(db("x"))?;
                Ok((mode, sync))
            })
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert!(
            sync >= 1,
            "synchronous must be NORMAL (1) or FULL (2), got {sync}"
        );
        let full = SqliteStore::open_file(&path, true, StoreOptions::default())
            .await
            .unwrap();
        let sync: i64 = full
            .read(|conn| {
                conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
                    .map_err(db("x"))
            })
            .await
            .unwrap();
        assert_eq!(sync, 2);
    }
}
