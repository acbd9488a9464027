//! Tasks, their log, and the values that move between producers, stores and
//! daemons.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::id::{DaemonId, TaskId, TaskIdentifier, TypeName};
use crate::payload::Response;
use crate::status::Status;
use crate::task_type::TaskType;

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Store-assigned id.
    pub id: TaskId,
    /// The task's type.
    #[serde(rename = "type")]
    pub task_type: TypeName,
    /// Unique within the type.
    pub identifier: TaskIdentifier,
    /// Current status.
    pub status: Status,
    /// When it was first enqueued (UTC, microseconds).
    #[serde(with = "time::serde::rfc3339")]
    pub inserted_at: OffsetDateTime,
    /// Last status change or heartbeat (UTC, microseconds).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it last entered the queue; the FIFO order key.
    #[serde(with = "time::serde::rfc3339")]
    pub enqueued_at: OffsetDateTime,
    /// When it may be claimed, at the earliest: its enqueue time unless it
    /// was delayed ([`NewTask::due`]) or is waiting for a retry. Queued
    /// tasks run in order of priority, then due time, then enqueue time.
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    /// Higher runs first; FIFO within a priority.
    pub priority: i32,
    /// How many times a handler was started on it.
    pub starts: u32,
    /// The daemon that holds it (SCHEDULED, RUNNING, PAUSED) or ran it to
    /// its end (FINISHED, FAILED); `None` while queued, once cancelled, and
    /// on a task a rescue FAILED (its attempt did not end it, and is stale).
    pub holder: Option<DaemonId>,
    /// How many times it was claimed; the fencing counter of [`Attempt`].
    pub lease: u64,
    /// The latest progress a handler reported in the current attempt.
    pub progress: Option<Progress>,
}

impl Task {
    /// The task an enqueue creates, as the store returns it: ACCEPTED,
    /// never started or claimed, enqueued `at`. Every column a new task
    /// starts with is set here, for every engine.
    pub fn enqueued(
        id: TaskId,
        task_type: TypeName,
        identifier: TaskIdentifier,
        at: OffsetDateTime,
        queued: Queued,
    ) -> Task {
        Task {
            id,
            task_type,
            identifier,
            status: crate::status::Transition::Enqueue.target(),
            inserted_at: at,
            updated_at: at,
            enqueued_at: at,
            due_at: queued.due_at,
            priority: queued.priority,
            starts: 0,
            holder: None,
            lease: 0,
            progress: None,
        }
    }

    /// The (type, identifier) reference of this task.
    pub fn key(&self) -> TaskRef {
        TaskRef::Key(self.task_type.clone(), self.identifier.clone())
    }
}

/// Where an enqueue put a task in the queue, as the store resolved it: the
/// type's default priority when none was given, the due time from a delay
/// on the store's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// The task's priority.
    pub priority: i32,
    /// When it may be claimed.
    pub due_at: OffsetDateTime,
}

/// When an enqueued task may run, if not at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Due {
    /// At this time (a time in the past means at once, ordered by it).
    At(#[serde(with = "time::serde::rfc3339")] OffsetDateTime),
    /// This long after the enqueue, on the store's clock (the database
    /// server's on PostgreSQL, so producers' clocks do not matter).
    After(std::time::Duration),
}

impl Due {
    /// The longest delay accepted (about a hundred years): keeps every due
    /// time representable on both engines.
    pub const MAX_DELAY: std::time::Duration =
        std::time::Duration::from_secs(100 * 366 * 24 * 3600);

    /// Refuses a delay longer than [`Due::MAX_DELAY`] and a time outside
    /// the years 1970–9999.
    pub fn validate(&self) -> crate::Result<()> {
        match *self {
            Due::After(d) if d > Due::MAX_DELAY => Err(crate::Error::InvalidArgument(format!(
                "a delay may be at most {} seconds, got {}",
                Due::MAX_DELAY.as_secs(),
                d.as_secs_f64()
            ))),
            Due::At(t) if t.year() < 1970 || t.year() > 9999 => Err(crate::Error::InvalidArgument(
                format!("a due time must lie in the years 1970 to 9999, got {t}"),
            )),
            _ => Ok(()),
        }
    }
}

/// Progress reported by a handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// 0–100, when the handler knows.
    pub percent: Option<f64>,
    /// Free text, may be empty.
    pub message: String,
}

/// One line of a task's history: a status change and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// When (UTC, microseconds).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The status the task entered.
    pub status: Status,
    /// Why.
    pub message: String,
}

/// Names a task: by id or by (type, identifier).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TaskRef {
    /// By numeric id.
    Id(TaskId),
    /// By type and identifier.
    Key(TypeName, TaskIdentifier),
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskRef::Id(id) => write!(f, "#{id}"),
            TaskRef::Key(t, i) => write!(f, "{t}/{i}"),
        }
    }
}

impl From<TaskId> for TaskRef {
    fn from(id: TaskId) -> Self {
        TaskRef::Id(id)
    }
}

/// What a producer hands in to enqueue one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// An existing type.
    #[serde(rename = "type")]
    pub task_type: TypeName,
    /// Unique within the type. A producer without a natural key uses
    /// [`NewTask::generated`]; in JSON it may be left out, and one is
    /// generated ([`TaskIdentifier::generate`]).
    #[serde(default = "TaskIdentifier::generate")]
    pub identifier: TaskIdentifier,
    /// The handler's input; `null` when there is none.
    #[serde(default)]
    pub input: serde_json::Value,
    /// The first log line; a default is used when `None`.
    #[serde(default)]
    pub message: Option<String>,
    /// Higher runs first; `None` takes the type's default priority
    /// ([`TaskType::priority`]). A steady stream of higher-priority work
    /// starves lower-priority work: priorities order the queue, they do not
    /// share it.
    #[serde(default)]
    pub priority: Option<i32>,
    /// When it may run, if not at once. It is queued (ACCEPTED, counted
    /// against the queue limit) from the enqueue on.
    #[serde(default)]
    pub due: Option<Due>,
}

impl NewTask {
    /// A task with no input and the default message.
    pub fn new(task_type: TypeName, identifier: TaskIdentifier) -> Self {
        NewTask {
            task_type,
            identifier,
            input: serde_json::Value::Null,
            message: None,
            priority: None,
            due: None,
        }
    }

    /// A task whose identifier ATP makes, for a producer that has no
    /// natural one: a new UUIDv7 ([`TaskIdentifier::generate`]), so such
    /// tasks' identifiers sort by the time they were made. Read it from
    /// `identifier` (or the enqueued [`Task`]); it is set here, before any
    /// store sees the task, so sending the same `NewTask` again cannot
    /// create a second task.
    pub fn generated(task_type: TypeName) -> Self {
        NewTask::new(task_type, TaskIdentifier::generate())
    }

    /// Sets the input.
    pub fn with_input(mut self, input: serde_json::Value) -> Self {
        self.input = input;
        self
    }

    /// Sets the first log message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets the priority (instead of the type's default).
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Delays the task: not claimed before `due`.
    pub fn with_due(mut self, due: Due) -> Self {
        self.due = Some(due);
        self
    }
}

/// One hold of one daemon on one task: the fencing token.
///
/// `lease` counts the claims of the task and grows by one at every claim, so
/// (holder, lease) names exactly one attempt, even when the same daemon
/// claims the same task again after a rescue. (It is stronger than (holder,
/// start number), which a claim that is rescued before it starts would not
/// change.) Every change a daemon makes names its attempt; a store applies
/// it only while the task is still held under this token, and otherwise
/// returns `StaleAttempt` and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attempt {
    /// The task.
    pub task: TaskId,
    /// The daemon holding it.
    pub holder: DaemonId,
    /// The task's claim count when this attempt claimed it.
    pub lease: u64,
}

/// A task a daemon has just claimed (SCHEDULED, not started).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    /// The hold; pass it to `task_start`.
    pub attempt: Attempt,
    /// The task's type name.
    pub task_type: TypeName,
    /// The task's identifier.
    pub identifier: TaskIdentifier,
}

/// A task whose handler may now run: RUNNING, or SCHEDULED when it was
/// claimed ahead of a free slot (see [`crate::ClaimParams::start`]), for
/// the holder to start with [`StatusChange::start`] as its handler begins.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedTask {
    /// The hold (unchanged by the start).
    pub attempt: Attempt,
    /// RUNNING (started, the start counted) or SCHEDULED (not yet).
    pub status: Status,
    /// Which start this is (1 for the first run), counted or to be.
    pub start: u32,
    /// The task's type, with its handler and limits.
    pub task_type: TaskType,
    /// The task's identifier.
    pub identifier: TaskIdentifier,
    /// The input given at enqueue.
    pub input: serde_json::Value,
    /// When the task last entered the queue.
    pub enqueued_at: OffsetDateTime,
    /// When it could first be claimed: its due time, for a delayed task or
    /// a retry (else its enqueue time).
    pub due_at: OffsetDateTime,
}

impl StartedTask {
    /// From when the task waited to be picked up: the later of its enqueue
    /// and due times (a delay or a retry's back-off is not pick-up
    /// latency). Pick-up latency is the start time minus this.
    pub fn ready_at(&self) -> OffsetDateTime {
        self.enqueued_at.max(self.due_at)
    }
}

/// What a holding daemon asks a held task to do. Each kind names one row of
/// [`Transition`](crate::status::Transition)'s table, so a holder cannot ask
/// for a move it may not make (claim, start, undefined).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// PAUSED → RUNNING.
    Resume,
    /// RUNNING → PAUSED.
    Pause,
    /// Held → FINISHED.
    Finish,
    /// Held → FAILED.
    Fail,
    /// Held → ACCEPTED: the holder gives the task back to the queue (FAILED
    /// instead when its starts are used up).
    HandBack,
    /// SCHEDULED → RUNNING: the handler of a task claimed ahead begins
    /// (counts the start, like [`crate::Store::task_start_many`]).
    Start,
}

impl ChangeKind {
    /// The status the holder asks for (ACCEPTED for a hand-back, even when
    /// the store fails the task instead).
    pub const fn status(self) -> Status {
        match self {
            ChangeKind::Resume => Status::Running,
            ChangeKind::Pause => Status::Paused,
            ChangeKind::Finish => Status::Finished,
            ChangeKind::Fail => Status::Failed,
            ChangeKind::HandBack => Status::Accepted,
            ChangeKind::Start => Status::Running,
        }
    }
}

/// A change a holding daemon asks for: what to do (a [`ChangeKind`]), its log
/// message, and optionally the response to store in the same transaction.
///
/// Built only through the named constructors ([`StatusChange::finish`],
/// [`StatusChange::fail`], [`StatusChange::pause`], [`StatusChange::resume`],
/// [`StatusChange::hand_back`] and the "unless terminal" forms of finish and
/// fail), in the way River's `JobSetStateCompleted` and
/// `JobSetStateErrorRetryable` work: "leave a terminal task alone" exists
/// only for the two final moves, where it means "success if not finished".
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    attempt: Attempt,
    kind: ChangeKind,
    message: String,
    unless_terminal: bool,
    response: Option<Response>,
    retry: Retry,
}

/// Whether a failure ([`ChangeKind::Fail`]) may put the task back in the
/// queue while it has starts left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retry {
    /// As the type's retry policy says: retried after its back-off, or
    /// final without a policy.
    #[default]
    ByPolicy,
    /// Final whatever the policy (the handler knows a retry cannot help).
    Never,
    /// Retried after this delay, with or without a policy (the handler
    /// knows when to try again).
    After(std::time::Duration),
}

impl StatusChange {
    fn of(attempt: Attempt, kind: ChangeKind, message: impl Into<String>) -> Self {
        StatusChange {
            attempt,
            kind,
            message: message.into(),
            unless_terminal: false,
            response: None,
            retry: Retry::ByPolicy,
        }
    }

    /// The task ends well (held → FINISHED).
    pub fn finish(attempt: Attempt, message: impl Into<String>) -> Self {
        Self::of(attempt, ChangeKind::Finish, message)
    }

    /// The task ends badly (held → FAILED), or, when its type has a retry
    /// policy and starts remain, goes back to the queue due after the
    /// policy's delay (held → ACCEPTED).
    pub fn fail(attempt: Attempt, message: impl Into<String>) -> Self {
        Self::of(attempt, ChangeKind::Fail, message)
    }

    /// The task ends badly for good (held → FAILED), whatever its type's
    /// retry policy.
    pub fn fail_permanently(attempt: Attempt, message: impl Into<String>) -> Self {
        Self::fail(attempt, message).retrying(Retry::Never)
    }

    /// The attempt failed and the task should run again after `delay`
    /// (held → ACCEPTED, due then), with or without a retry policy; FAILED
    /// instead when its starts are used up.
    pub fn retry_after(
        attempt: Attempt,
        message: impl Into<String>,
        delay: std::time::Duration,
    ) -> Self {
        Self::fail(attempt, message).retrying(Retry::After(delay))
    }

    /// The same change with another retry choice (a failure only).
    pub fn retrying(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Finishes the task unless this attempt already gave it a final status,
    /// which is then kept ("success if not finished": a handler that failed
    /// its task itself and then returned normally).
    pub fn finish_unless_terminal(attempt: Attempt, message: impl Into<String>) -> Self {
        Self::finish(attempt, message).leaving_terminal()
    }

    /// Fails the task unless this attempt already gave it a final status.
    pub fn fail_unless_terminal(attempt: Attempt, message: impl Into<String>) -> Self {
        Self::fail(attempt, message).leaving_terminal()
    }

    /// The handler pauses (RUNNING → PAUSED).
    pub fn pause(attempt: Attempt, message: impl Into<String>) -> Self {
        Self::of(attempt, ChangeKind::Pause, message)
    }

    /// The handler resumes (PAUSED → RUNNING).
    pub fn resume(attempt: Attempt, message: impl Into<String>) -> Self {
        Self::of(attempt, ChangeKind::Resume, message)
    }

    /// The holder gives the task back to the queue (held → ACCEPTED, or
    /// FAILED once its starts are used up), logged with `reason`.
    pub fn hand_back(attempt: Attempt, reason: impl Into<String>) -> Self {
        Self::of(attempt, ChangeKind::HandBack, reason)
    }

    /// The handler of a task claimed ahead (held SCHEDULED, see
    /// [`crate::ClaimParams::start`]) begins: SCHEDULED → RUNNING, the start
    /// counted and logged as a start is ("Started by …").
    ///
    /// A holder may run the handler before this change is written: a
    /// rescue counts a start for a task it finds SCHEDULED (see
    /// [`crate::decide::release`]), so a handler that kills its daemon
    /// still uses up its starts.
    pub fn start(attempt: Attempt) -> Self {
        Self::of(attempt, ChangeKind::Start, String::new())
    }

    fn leaving_terminal(mut self) -> Self {
        self.unless_terminal = true;
        self
    }

    /// Stores `response` with the change, in the same transaction (the
    /// result of a finish or a failure, or what a paused handler has so far).
    pub fn with_response(mut self, response: Response) -> Self {
        self.response = Some(response);
        self
    }

    /// The hold the change is made under.
    pub fn attempt(&self) -> Attempt {
        self.attempt
    }

    /// What is asked.
    pub fn kind(&self) -> ChangeKind {
        self.kind
    }

    /// The status asked for (see [`ChangeKind::status`]).
    pub fn status(&self) -> Status {
        self.kind.status()
    }

    /// The log message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The response stored with the change, if any.
    pub fn response(&self) -> Option<&Response> {
        self.response.as_ref()
    }

    /// Whether a task this attempt already ended is left as it is instead
    /// of refused.
    pub fn leaves_terminal(&self) -> bool {
        self.unless_terminal
    }

    /// Whether a failure may be retried (see [`Retry`]).
    pub fn retry(&self) -> Retry {
        self.retry
    }
}

/// Filter and page for listing tasks, newest update first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this type.
    pub task_type: Option<TypeName>,
    /// Only tasks held by this daemon (SCHEDULED, RUNNING or PAUSED with
    /// this holder).
    pub holder: Option<DaemonId>,
    /// Only tasks whose identifier starts with this text, compared
    /// character for character (no wildcards, case-sensitive); empty or
    /// `None` means no filter. The stores read it as an index range, so a
    /// search costs what it finds, not the table's size.
    pub identifier_prefix: Option<String>,
    /// Page size; 0 means the default (100). Capped at 10,000.
    pub limit: u32,
    /// Continue after this position (from the previous page's `next`).
    pub after: Option<TaskCursor>,
}

impl TaskFilter {
    /// Default page size.
    pub const DEFAULT_LIMIT: u32 = 100;
    /// Largest page size.
    pub const MAX_LIMIT: u32 = 10_000;

    /// The page size to use.
    pub fn effective_limit(&self) -> u32 {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }
}

/// A keyset position in the (updated_at desc, id desc) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCursor {
    /// Update time of the last task seen, in microseconds since the epoch.
    pub updated_at_micros: i64,
    /// Id of the last task seen.
    pub id: TaskId,
}

impl TaskCursor {
    /// The cursor that continues after `task`.
    pub fn after(task: &Task) -> Self {
        TaskCursor {
            updated_at_micros: crate::time::to_micros(task.updated_at),
            id: task.id,
        }
    }
}

impl fmt::Display for TaskCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.updated_at_micros, self.id.0)
    }
}

impl FromStr for TaskCursor {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || crate::error::Error::InvalidArgument(format!("invalid cursor {s:?}"));
        let (micros, id) = s.split_once('.').ok_or_else(bad)?;
        Ok(TaskCursor {
            updated_at_micros: micros.parse().map_err(|_| bad())?,
            id: TaskId(id.parse().map_err(|_| bad())?),
        })
    }
}

/// One page of tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    /// The tasks, newest update first.
    pub tasks: Vec<Task>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<TaskCursor>,
}

/// A listed task with the message of its newest log record: why it is
/// where it is (for a FAILED task, the failure).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskWithMessage {
    /// The task.
    pub task: Task,
    /// Its newest log record's message (empty for a task without a log,
    /// which only a hand-written row can be).
    pub last_message: String,
}

/// One page of tasks with their last messages, in [`TaskPage`]'s order.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessagePage {
    /// The tasks, newest update first.
    pub tasks: Vec<TaskWithMessage>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<TaskCursor>,
}

/// An operator's re-enqueue of every task in one status, optionally of one
/// type: all of them in one transaction, or none.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkReenqueue {
    /// The status the tasks are in (any but ACCEPTED).
    pub status: Status,
    /// Only this type; `None` for every type.
    pub task_type: Option<TypeName>,
    /// Each task's log message; empty for the default one.
    pub message: String,
}

/// Task counts.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct TaskCounts {
    /// (status, count) for every status that has tasks.
    pub by_status: Vec<(Status, u64)>,
    /// (type, status, count) for every pair that has tasks.
    pub by_type: Vec<(TypeName, Status, u64)>,
}

impl TaskCounts {
    /// Tasks with this status.
    pub fn status(&self, status: Status) -> u64 {
        self.by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    /// All tasks.
    pub fn total(&self) -> u64 {
        self.by_status.iter().map(|(_, n)| n).sum()
    }
}

/// What the abandoned-task clean-up did to one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescued {
    /// The task.
    pub id: TaskId,
    /// Its type.
    pub task_type: TypeName,
    /// Its identifier.
    pub identifier: TaskIdentifier,
    /// ACCEPTED (re-enqueued) or FAILED (starts used up).
    pub outcome: Status,
    /// Its start count.
    pub starts: u32,
}

/// A task the retention clean-up deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    /// The task.
    pub id: TaskId,
    /// Its type.
    pub task_type: TypeName,
    /// Its identifier.
    pub identifier: TaskIdentifier,
    /// FINISHED or FAILED.
    pub status: Status,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_new_task_has_a_fresh_identifier_each_time() {
        let t = TypeName::new("T").unwrap();
        let a = NewTask::generated(t.clone());
        let b = NewTask::generated(t.clone()).with_input(serde_json::json!(1));
        assert_eq!(a.task_type, t);
        assert_ne!(a.identifier, b.identifier);
        assert!(a.identifier < b.identifier, "made later, sorts later");
        assert_eq!(a.input, serde_json::Value::Null);
    }

    #[test]
    fn a_new_task_without_an_identifier_in_json_gets_one_and_a_given_one_is_validated() {
        let new: NewTask = serde_json::from_str(r#"{"type": "T", "input": [1]}"#).unwrap();
        assert_eq!(new.identifier.as_str().len(), 36, "{}", new.identifier);
        let given: NewTask = serde_json::from_str(r#"{"type": "T", "identifier": "x"}"#).unwrap();
        assert_eq!(given.identifier.as_str(), "x");
        assert!(serde_json::from_str::<NewTask>(r#"{"type": "T", "identifier": ""}"#).is_err());
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = TaskCursor {
            updated_at_micros: 1_700_000_000_123_456,
            id: TaskId(42),
        };
        assert_eq!(c.to_string().parse::<TaskCursor>().unwrap(), c);
        for bad in ["", "1", "a.b", "1.", ".2"] {
            assert!(bad.parse::<TaskCursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn filter_limit_defaults_and_caps() {
        let mut f = TaskFilter::default();
        assert_eq!(f.effective_limit(), 100);
        f.limit = 1_000_000;
        assert_eq!(f.effective_limit(), 10_000);
    }
}
