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
    /// How many times a handler was started on it.
    pub starts: u32,
    /// The daemon that holds it (SCHEDULED, RUNNING, PAUSED) or ran it to
    /// its end (FINISHED, FAILED); `None` while queued.
    pub holder: Option<DaemonId>,
    /// How many times it was claimed; the fencing counter of [`Attempt`].
    pub lease: u64,
    /// The latest progress a handler reported in the current attempt.
    pub progress: Option<Progress>,
}

impl Task {
    /// The (type, identifier) reference of this task.
    pub fn key(&self) -> TaskRef {
        TaskRef::Key(self.task_type.clone(), self.identifier.clone())
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
    /// Unique within the type.
    pub identifier: TaskIdentifier,
    /// The handler's input; `null` when there is none.
    #[serde(default)]
    pub input: serde_json::Value,
    /// The first log line; a default is used when `None`.
    #[serde(default)]
    pub message: Option<String>,
}

impl NewTask {
    /// A task with no input and the default message.
    pub fn new(task_type: TypeName, identifier: TaskIdentifier) -> Self {
        NewTask {
            task_type,
            identifier,
            input: serde_json::Value::Null,
            message: None,
        }
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

/// A task whose handler may now run (RUNNING).
#[derive(Debug, Clone, PartialEq)]
pub struct StartedTask {
    /// The hold (unchanged by the start).
    pub attempt: Attempt,
    /// Which start this is (1 for the first run).
    pub start: u32,
    /// The task's type, with its handler and limits.
    pub task_type: TaskType,
    /// The task's identifier.
    pub identifier: TaskIdentifier,
    /// The input given at enqueue.
    pub input: serde_json::Value,
    /// When the task last entered the queue: pick-up latency is start time
    /// minus this.
    pub enqueued_at: OffsetDateTime,
}

/// A change a holding daemon asks for: a new status, its log message, and
/// optionally the response to store in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// The hold.
    pub attempt: Attempt,
    /// RUNNING (resume), PAUSED, FINISHED, FAILED, or ACCEPTED (hand the task
    /// back to the queue; FAILED instead when its starts are used up).
    pub status: Status,
    /// The log message.
    pub message: String,
    /// Stored with the change when given.
    pub response: Option<Response>,
    /// When set, a task already FINISHED or FAILED by this attempt is left as
    /// it is instead of refused ("success if not finished").
    pub unless_terminal: bool,
}

impl StatusChange {
    /// A plain status change.
    pub fn new(attempt: Attempt, status: Status, message: impl Into<String>) -> Self {
        StatusChange {
            attempt,
            status,
            message: message.into(),
            response: None,
            unless_terminal: false,
        }
    }

    /// Stores `response` with the change.
    pub fn with_response(mut self, response: Response) -> Self {
        self.response = Some(response);
        self
    }

    /// Leaves an already terminal task as it is.
    pub fn unless_terminal(mut self) -> Self {
        self.unless_terminal = true;
        self
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
