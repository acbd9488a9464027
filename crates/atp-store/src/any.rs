//! One store type over both engines, for callers that choose by URL.

use std::future::Future;

use atp_core::store::ClaimParams;
use atp_core::{
    Attempt, BulkReenqueue, ClaimedTask, DaemonId, DaemonInfo, DeadRule, LogRecord, NewTask,
    Progress, ReapedDaemon, Rescued, Response, Result, Retired, StartedTask, StatusChange, Store,
    StoreOptions, Task, TaskCounts, TaskFilter, TaskId, TaskMessagePage, TaskPage, TaskRef,
    TaskType, TypeName,
};

use atp_core::schedule::{NewSchedule, Schedule, ScheduleFired, ScheduleName, ScheduleOccurrence};

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;

/// A store of either engine. Cheap to clone.
#[derive(Clone)]
pub enum AnyStore {
    /// SQLite.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

impl std::fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnyStore({})", self.engine())
    }
}

/// Calls the same method on whichever engine this is.
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($store) => $call,
            AnyStore::Postgres($store) => $call,
        }
    };
}

/// Forwards async trait methods: `name(arg: Type, …) -> Output;`.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        $(
            fn $name(&self, $($arg: $ty),*) -> impl Future<Output = Result<$out>> + Send {
                async move { dispatch!(self, s => s.$name($($arg),*).await) }
            }
        )*
    };
}

impl Store for AnyStore {
    fn engine(&self) -> &'static str {
        dispatch!(self, s => s.engine())
    }

    fn options(&self) -> StoreOptions {
        dispatch!(self, s => s.options())
    }

    async fn wait_for_tasks(&self, within: std::time::Duration) {
        dispatch!(self, s => s.wait_for_tasks(within).await)
    }

    fn task_cancelled_watch(&self, holder: DaemonId) -> atp_core::CancelWatch {
        dispatch!(self, s => s.task_cancelled_watch(holder))
    }

    forward! {
        schema_version() -> u32;
        task_next_due() -> Option<std::time::Duration>;
        task_type_upsert(task_type: &TaskType) -> ();
        task_type_get(name: &TypeName) -> TaskType;
        task_type_list() -> Vec<TaskType>;
        task_type_set_paused(name: &TypeName, paused: bool) -> TaskType;
        task_type_delete(name: &TypeName, force: bool) -> u64;
        task_enqueue(task: NewTask) -> Task;
        task_enqueue_many(tasks: Vec<NewTask>) -> Vec<TaskId>;
        task_claim(params: &ClaimParams) -> Vec<ClaimedTask>;
        task_claim_start(params: &ClaimParams) -> Vec<StartedTask>;
        task_start_many(attempts: &[Attempt]) -> Vec<Result<StartedTask>>;
        task_set_status_many(changes: &[StatusChange]) -> Vec<Result<()>>;
        task_heartbeat_many(attempts: &[Attempt]) -> Vec<Result<()>>;
        task_progress(attempt: Attempt, progress: &Progress) -> ();
        task_response_put(attempt: Attempt, response: &Response) -> ();
        task_get(task: &TaskRef) -> Task;
        task_input(task: &TaskRef) -> serde_json::Value;
        task_log(task: &TaskRef) -> Vec<LogRecord>;
        task_response_get(task: &TaskRef) -> Option<Response>;
        task_list(filter: &TaskFilter) -> TaskPage;
        task_list_with_last_message(filter: &TaskFilter) -> TaskMessagePage;
        task_counts() -> TaskCounts;
        queue_size() -> u64;
        task_delete(task: &TaskRef) -> ();
        task_reenqueue(task: &TaskRef, message: &str) -> Task;
        task_reenqueue_all(bulk: &BulkReenqueue) -> u64;
        task_cancel(task: &TaskRef, message: Option<&str>) -> Task;
        task_requeue_abandoned() -> Vec<Rescued>;
        task_delete_retired(limit: u32) -> Vec<Retired>;
        daemon_register(daemon: &DaemonInfo) -> ();
        daemon_heartbeat(id: DaemonId) -> bool;
        daemon_deregister(id: DaemonId) -> ();
        daemon_list() -> Vec<DaemonInfo>;
        daemon_reap_dead(rule: DeadRule) -> Vec<ReapedDaemon>;
        schedule_upsert(schedule: &NewSchedule) -> Schedule;
        schedule_get(name: &ScheduleName) -> Schedule;
        schedule_list() -> Vec<Schedule>;
        schedule_delete(name: &ScheduleName) -> ();
        schedule_set_paused(name: &ScheduleName, paused: bool) -> Schedule;
        schedule_enqueue(occurrence: &ScheduleOccurrence) -> ScheduleFired;
    }
}
