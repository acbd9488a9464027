//! The one storage seam. Every byte ATP keeps goes through [`Store`]; each
//! engine implements it and passes the same contract suite
//! (`atp-store`'s `conformance` module).
//!
//! Methods are entity-first (`task_type_*`, `task_*`, `queue_*`) so they sort
//! into groups. Every method that changes a status writes the log record in
//! the same transaction and checks the move against
//! [`crate::status::Transition`] with a compare-and-set.

use std::future::Future;

use crate::cancel::CancelWatch;
use crate::clock::Clock;
use crate::daemon::{DaemonInfo, DeadRule, ReapedDaemon};
use crate::error::Result;
use crate::id::{DaemonId, TaskId, TypeName};
use crate::payload::Response;
use crate::schedule::{NewSchedule, Schedule, ScheduleFired, ScheduleName, ScheduleOccurrence};
use crate::task::{
    Attempt, BulkReenqueue, ClaimedTask, LogRecord, NewTask, Progress, Rescued, Retired,
    StartedTask, StatusChange, Task, TaskCounts, TaskFilter, TaskMessagePage, TaskPage, TaskRef,
};
use crate::task_type::TaskType;

/// Limits a store handle enforces on producers, and how it reaches its
/// database. Build it with `..Default::default()` for the fields you leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Enqueue fails with `QueueFull` once this many tasks are ACCEPTED;
    /// 0 means no limit. Re-enqueues by operators and the clean-up are
    /// never refused, so that no task is lost to the limit.
    pub max_queue_size: u64,
    /// Largest serialized JSON input accepted, in bytes.
    pub max_input_bytes: usize,
    /// Most connections the handle opens at once: the PostgreSQL pool's
    /// size; on SQLite, the read connections beside the one writer. From 1
    /// to [`StoreOptions::MAX_POOL_SIZE`].
    pub pool_size: usize,
    /// Where "now" comes from (the engine's clock unless a test moves it).
    pub clock: Clock,
}

impl StoreOptions {
    /// Default queue limit: large enough not to get in the way of normal
    /// bursts, small enough to stop a runaway producer.
    pub const DEFAULT_MAX_QUEUE_SIZE: u64 = 100_000;
    /// Default input limit: 1 MiB.
    pub const DEFAULT_MAX_INPUT_BYTES: usize = 1024 * 1024;
    /// Largest pool size: more connections than any PostgreSQL server
    /// is set up to take (its `max_connections` is usually 100 to a few
    /// hundred).
    pub const MAX_POOL_SIZE: usize = 10_000;
    /// Default pool size. A daemon uses a few connections at a time
    /// (claims, status batches, heartbeats, clean-ups); more would only
    /// queue inside the server.
    pub const DEFAULT_POOL_SIZE: usize = 16;

    /// Refuses options no store can work with (a pool of no connections).
    pub fn validate(&self) -> Result<()> {
        if self.pool_size == 0 {
            return Err(crate::error::Error::InvalidArgument(
                "the connection pool size must be at least 1".into(),
            ));
        }
        // The pool sets aside room for every connection it may open: an
        // absurd size would abort the process for want of memory.
        if self.pool_size > Self::MAX_POOL_SIZE {
            return Err(crate::error::Error::InvalidArgument(format!(
                "the connection pool size must be at most {}, got {}",
                Self::MAX_POOL_SIZE,
                self.pool_size
            )));
        }
        Ok(())
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_queue_size: Self::DEFAULT_MAX_QUEUE_SIZE,
            max_input_bytes: Self::DEFAULT_MAX_INPUT_BYTES,
            pool_size: Self::DEFAULT_POOL_SIZE,
            clock: Clock::engine(),
        }
    }
}

/// Parameters of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimParams {
    /// Who claims.
    pub holder: DaemonId,
    /// At most this many tasks.
    pub limit: u32,
    /// Only tasks of these types; `None` for any type.
    pub types: Option<Vec<TypeName>>,
    /// The log message of the SCHEDULED record.
    pub message: String,
    /// How many of the claimed tasks (the first, in queue order)
    /// [`Store::task_claim_start`] also starts (RUNNING, start counted);
    /// `None` for all. The others stay SCHEDULED, held by `holder`, which
    /// starts each once a slot is free for it ([`StatusChange::start`]): a
    /// daemon claiming ahead of its free slots, so that a task reads
    /// RUNNING only once its handler runs.
    ///
    /// [`StatusChange::start`]: crate::StatusChange::start
    pub start: Option<u32>,
}

impl ClaimParams {
    /// Claim up to `limit` tasks of any type.
    pub fn new(holder: DaemonId, limit: u32) -> Self {
        ClaimParams {
            holder,
            limit,
            types: None,
            message: format!("Scheduled by {holder}"),
            start: None,
        }
    }

    /// Start only the first `n` tasks claimed (see [`ClaimParams::start`]).
    pub fn starting(mut self, n: u32) -> Self {
        self.start = Some(n);
        self
    }

    /// Restrict to `types`.
    pub fn with_types(mut self, types: Vec<TypeName>) -> Self {
        self.types = Some(types);
        self
    }
}

/// Storage for task types, tasks, their queue, log, inputs and responses.
///
/// Implementations are cheap to clone handles onto a pool; all methods may be
/// called from many tasks and many processes at once. "Database is locked"
/// and serialization failures are retried inside and never returned.
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn engine(&self) -> &'static str;

    /// The limits this handle enforces.
    fn options(&self) -> StoreOptions;

    /// The schema version the database is at.
    fn schema_version(&self) -> impl Future<Output = Result<u32>> + Send;

    // --- task types -------------------------------------------------------

    /// Inserts the type, or updates it when the name exists. An existing
    /// type keeps its pause state (see [`TaskType::paused`]): registering
    /// again never resumes a paused type, nor pauses a running one.
    fn task_type_upsert(&self, task_type: &TaskType) -> impl Future<Output = Result<()>> + Send;

    /// The type with this name, or `TypeNotFound`.
    fn task_type_get(&self, name: &TypeName) -> impl Future<Output = Result<TaskType>> + Send;

    /// All types, by name.
    fn task_type_list(&self) -> impl Future<Output = Result<Vec<TaskType>>> + Send;

    /// Pauses (`true`) or resumes (`false`) a type and returns it as it now
    /// is; `TypeNotFound` for an unknown name. Enforced by the claim itself:
    /// no claim (restricted to types or not, with or without a start) that
    /// begins after this call returns takes a paused type's tasks, whatever
    /// list of types its caller read before. Queued tasks stay ACCEPTED and
    /// keep their place; enqueues are still accepted; held tasks are left to
    /// their holders. A resume wakes [`Store::wait_for_tasks`] like an
    /// enqueue. Idempotent.
    fn task_type_set_paused(
        &self,
        name: &TypeName,
        paused: bool,
    ) -> impl Future<Output = Result<TaskType>> + Send;

    /// Removes a type. Refused with `TypeHasTasks` while it has tasks, unless
    /// `force`, which deletes them (with everything they own) first. Returns
    /// how many tasks were deleted.
    fn task_type_delete(
        &self,
        name: &TypeName,
        force: bool,
    ) -> impl Future<Output = Result<u64>> + Send;

    // --- producers --------------------------------------------------------

    /// Creates one task as ACCEPTED, logs it and queues it. A task whose
    /// (type, identifier) exists is `DuplicateTask` even when the queue is
    /// full too, so a producer that resends a task it enqueued learns that
    /// it is in rather than `QueueFull`. An input the type's input schema
    /// refuses is `InputInvalid` (naming the failing paths), checked against
    /// the schema as stored when the task goes in, whichever handle set it.
    fn task_enqueue(&self, task: NewTask) -> impl Future<Output = Result<Task>> + Send;

    /// Enqueues all or none (`DuplicateTask` before `QueueFull`, as
    /// [`Store::task_enqueue`]). Ids come back in input order.
    fn task_enqueue_many(
        &self,
        tasks: Vec<NewTask>,
    ) -> impl Future<Output = Result<Vec<TaskId>>> + Send;

    /// Resolves when tasks may have entered the queue since this call began, or
    /// after `within` at the latest. Idle daemons wait on it instead of sleeping.
    /// Spurious wake-ups are allowed; missed ones are not, except across
    /// processes on SQLite (which has no cross-process signal: callers poll).
    fn wait_for_tasks(&self, within: std::time::Duration) -> impl Future<Output = ()> + Send;

    /// How long until the earliest delayed task (queued with a due time
    /// after its enqueue, not yet claimable) is due, on the store's clock;
    /// zero when one is due already, `None` when none is delayed. An idle
    /// daemon sleeps that long at most instead of polling the table, so it
    /// starts a delayed task at its due time.
    fn task_next_due(&self) -> impl Future<Output = Result<Option<std::time::Duration>>> + Send;

    // --- daemons ----------------------------------------------------------

    /// Claims up to `limit` of the oldest ACCEPTED tasks of types not paused
    /// (FIFO by enqueue time, then id), marks them SCHEDULED for `holder` and logs it. Every
    /// task returned is claimed by this call alone.
    fn task_claim(
        &self,
        params: &ClaimParams,
    ) -> impl Future<Output = Result<Vec<ClaimedTask>>> + Send;

    /// Claims up to `limit` of the oldest ACCEPTED tasks like [`Store::task_claim`]
    /// and starts them like [`Store::task_start_many`], in one transaction: each
    /// task gets both its SCHEDULED and its RUNNING log record (in that order),
    /// its lease and its start count, exactly as the two calls would leave it.
    /// With [`ClaimParams::start`], only that many (the first in queue order)
    /// are started; the rest are returned SCHEDULED ([`StartedTask::status`])
    /// with the start number they will have. Every task returned is claimed
    /// by this call alone.
    fn task_claim_start(
        &self,
        params: &ClaimParams,
    ) -> impl Future<Output = Result<Vec<StartedTask>>> + Send;

    /// Starts claimed tasks: SCHEDULED → RUNNING, counts the start, returns
    /// what the handler needs. One result per attempt, in order; a stale one
    /// fails alone.
    fn task_start_many(
        &self,
        attempts: &[Attempt],
    ) -> impl Future<Output = Result<Vec<Result<StartedTask>>>> + Send;

    /// Applies status changes from holders. One result per change, in order;
    /// a stale or illegal one fails alone and changes nothing.
    fn task_set_status_many(
        &self,
        changes: &[StatusChange],
    ) -> impl Future<Output = Result<Vec<Result<()>>>> + Send;

    /// Refreshes the update time of held tasks without a log record, so a
    /// long attempt is not taken for abandoned. One result per attempt.
    fn task_heartbeat_many(
        &self,
        attempts: &[Attempt],
    ) -> impl Future<Output = Result<Vec<Result<()>>>> + Send;

    /// Records progress (and heartbeats) for a held task.
    fn task_progress(
        &self,
        attempt: Attempt,
        progress: &Progress,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Stores (or replaces) the response of a held task.
    fn task_response_put(
        &self,
        attempt: Attempt,
        response: &Response,
    ) -> impl Future<Output = Result<()>> + Send;

    // --- operators --------------------------------------------------------

    /// The task, or `TaskNotFound`.
    fn task_get(&self, task: &TaskRef) -> impl Future<Output = Result<Task>> + Send;

    /// The task's input (`null` when it had none).
    fn task_input(&self, task: &TaskRef) -> impl Future<Output = Result<serde_json::Value>> + Send;

    /// The task's log, oldest first.
    fn task_log(&self, task: &TaskRef) -> impl Future<Output = Result<Vec<LogRecord>>> + Send;

    /// The stored response, if any.
    fn task_response_get(
        &self,
        task: &TaskRef,
    ) -> impl Future<Output = Result<Option<Response>>> + Send;

    /// One page of tasks, newest update first.
    fn task_list(&self, filter: &TaskFilter) -> impl Future<Output = Result<TaskPage>> + Send;

    /// [`Store::task_list`] with each task's newest log message, read in
    /// the same statement (one index probe per listed task, no query per
    /// task).
    fn task_list_with_last_message(
        &self,
        filter: &TaskFilter,
    ) -> impl Future<Output = Result<TaskMessagePage>> + Send;

    /// Counts by status and by type. Kept by the engines as tasks change, so
    /// the call costs the same with 10 or 10,000,000 tasks (the dashboard
    /// asks once a second per open tab); exact for every write committed
    /// before the call.
    fn task_counts(&self) -> impl Future<Output = Result<TaskCounts>> + Send;

    /// How many tasks are ACCEPTED.
    fn queue_size(&self) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes a task with its log, input and response.
    fn task_delete(&self, task: &TaskRef) -> impl Future<Output = Result<()>> + Send;

    /// Puts a task back in the queue from any status but ACCEPTED, whoever
    /// holds it. The start count is reset: an operator's re-enqueue gives the
    /// task its full number of starts again. Any holder's later change is
    /// stale.
    fn task_reenqueue(
        &self,
        task: &TaskRef,
        message: &str,
    ) -> impl Future<Output = Result<Task>> + Send;

    /// [`Store::task_reenqueue`] for every task in `bulk.status` (of
    /// `bulk.task_type` when given), in one transaction: each is logged
    /// and counted into the queue, starts reset; idle daemons are woken.
    /// Returns how many were re-enqueued. ACCEPTED is refused
    /// (`InvalidArgument`), an unknown type is `TypeNotFound`; either
    /// changes nothing. The queue limit does not apply (an operator's act).
    fn task_reenqueue_all(&self, bulk: &BulkReenqueue) -> impl Future<Output = Result<u64>> + Send;

    /// An operator's cancellation (decided by [`crate::decide::cancel`]),
    /// logged "Cancelled: `message`" or "Cancelled by an operator"; returns
    /// the task as it now is. A queued task leaves the queue (counted out)
    /// and never runs. A held one (SCHEDULED, RUNNING, PAUSED) becomes
    /// CANCELLED at once and its holder is cleared, so every later change,
    /// heartbeat, progress or response of that attempt is `StaleAttempt`;
    /// its holder is told (see [`Store::task_cancelled_watch`]). FINISHED,
    /// FAILED and CANCELLED tasks have ended: `InvalidTransition`.
    fn task_cancel(
        &self,
        task: &TaskRef,
        message: Option<&str>,
    ) -> impl Future<Output = Result<Task>> + Send;

    /// Notices of tasks held by `holder` that are cancelled from now on
    /// (see [`crate::cancel`]). PostgreSQL hears every handle on the
    /// database, on every host (a notification committed with the cancel);
    /// SQLite hears the handles of this process on the same file only:
    /// a cancel made by another process reaches the holder at its next
    /// heartbeat, which the CANCELLED task refuses. Call it inside the
    /// async runtime the daemon runs on.
    fn task_cancelled_watch(&self, holder: DaemonId) -> CancelWatch;

    // --- clean-ups --------------------------------------------------------
    //
    // "Now" is the handle's clock ([`StoreOptions::clock`]), which also
    // stamps every time the store writes.

    /// Re-enqueues tasks SCHEDULED, RUNNING or PAUSED and not updated within
    /// their type's timeout, or FAILs them when their starts are used up.
    fn task_requeue_abandoned(&self) -> impl Future<Output = Result<Vec<Rescued>>> + Send;

    /// Deletes up to `limit` FINISHED, FAILED or CANCELLED tasks older than their type's
    /// retention (types with retention > 0 only). An engine may do other
    /// periodic housekeeping here (PostgreSQL folds its pending count
    /// changes, see `task_counts`).
    fn task_delete_retired(&self, limit: u32) -> impl Future<Output = Result<Vec<Retired>>> + Send;

    // --- daemons' own records ---------------------------------------------

    /// Records a daemon (insert or replace); the store sets the heartbeat.
    fn daemon_register(&self, daemon: &DaemonInfo) -> impl Future<Output = Result<()>> + Send;

    /// Refreshes a daemon's heartbeat. `false` when its record is gone: it
    /// was declared dead and its tasks were rescued, so it must stop every
    /// attempt it runs and register again.
    fn daemon_heartbeat(&self, id: DaemonId) -> impl Future<Output = Result<bool>> + Send;

    /// Removes a daemon's record (clean shutdown).
    fn daemon_deregister(&self, id: DaemonId) -> impl Future<Output = Result<()>> + Send;

    /// Live daemon records, oldest first.
    fn daemon_list(&self) -> impl Future<Output = Result<Vec<DaemonInfo>>> + Send;

    /// Removes the daemons `rule` takes for dead (see [`DeadRule`]: silent
    /// for `silent_secs`, or for `gone_secs` and shown gone) and rescues
    /// held tasks (ACCEPTED, or FAILED with starts used up): at once those
    /// of a daemon shown gone (its process is over); those of any other
    /// holder without a record (removed by the silence, now or earlier, or
    /// never registered) once they were not updated for `silent_secs`
    /// either (a holder that touched a task lately may be alive, and a
    /// claimer may register after its first claim).
    fn daemon_reap_dead(
        &self,
        rule: DeadRule,
    ) -> impl Future<Output = Result<Vec<ReapedDaemon>>> + Send;

    // --- schedules (periodic tasks) ---------------------------------------

    /// Creates the schedule, or changes an existing one's type, recurrence,
    /// input and catch-up; returns it as stored. An existing schedule keeps
    /// its pause, its creation time and its last enqueued occurrence (a
    /// change never re-enqueues an occurrence). `TypeNotFound` for an
    /// unknown type, `InputTooLarge` past the handle's input limit,
    /// `InputInvalid` for an input the type's schema refuses; each stores
    /// nothing. Deleting the type deletes its schedules.
    fn schedule_upsert(
        &self,
        schedule: &NewSchedule,
    ) -> impl Future<Output = Result<Schedule>> + Send;

    /// The schedule, or `ScheduleNotFound`.
    fn schedule_get(&self, name: &ScheduleName) -> impl Future<Output = Result<Schedule>> + Send;

    /// All schedules, by name.
    fn schedule_list(&self) -> impl Future<Output = Result<Vec<Schedule>>> + Send;

    /// Removes a schedule (its enqueued tasks stay); `ScheduleNotFound`
    /// when there is none.
    fn schedule_delete(&self, name: &ScheduleName) -> impl Future<Output = Result<()>> + Send;

    /// Pauses (`true`) or resumes (`false`) a schedule and returns it as it
    /// now is; `ScheduleNotFound` for an unknown name. Idempotent.
    fn schedule_set_paused(
        &self,
        name: &ScheduleName,
        paused: bool,
    ) -> impl Future<Output = Result<Schedule>> + Send;

    /// Enqueues one occurrence of a schedule, exactly once across every
    /// caller: in one transaction, moves the schedule's last enqueued
    /// occurrence forward to `occurrence.at` by compare-and-set (only if the
    /// schedule is not paused, was created before it and has not enqueued
    /// it or a later one; else [`ScheduleFired::Passed`], nothing changed),
    /// and enqueues the task [`Schedule::task_for`] makes, under the queue
    /// limit (`QueueFull` changes nothing, so the occurrence can be tried
    /// again). A task with that identifier already there is
    /// [`ScheduleFired::Existed`] (the schedule still advances).
    /// `ScheduleNotFound` for an unknown schedule; `InvalidArgument` when
    /// `at` is not one of its occurrences.
    fn schedule_enqueue(
        &self,
        occurrence: &ScheduleOccurrence,
    ) -> impl Future<Output = Result<ScheduleFired>> + Send;
}

/// Conveniences over the batch methods, for every store.
pub trait StoreExt: Store {
    /// Starts one claimed task.
    fn task_start(&self, attempt: Attempt) -> impl Future<Output = Result<StartedTask>> + Send {
        async move { single(self.task_start_many(&[attempt]).await?) }
    }

    /// Applies one status change.
    fn task_set_status(&self, change: StatusChange) -> impl Future<Output = Result<()>> + Send {
        async move {
            single(
                self.task_set_status_many(std::slice::from_ref(&change))
                    .await?,
            )
        }
    }

    /// Heartbeats one held task.
    fn task_heartbeat(&self, attempt: Attempt) -> impl Future<Output = Result<()>> + Send {
        async move { single(self.task_heartbeat_many(&[attempt]).await?) }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

fn single<T>(mut results: Vec<Result<T>>) -> Result<T> {
    match results.pop() {
        Some(result) if results.is_empty() => result,
        _ => Err(crate::error::Error::Corrupt(
            "store returned the wrong number of results".into(),
        )),
    }
}
