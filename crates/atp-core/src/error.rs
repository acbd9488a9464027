//! The one error type of ATP's library layers.
//!
//! Stores map engine errors (constraint violations, lock time-outs) to these
//! domain variants at their boundary, so callers match on meaning, never on
//! SQL state codes.

use crate::id::{InvalidName, TaskId};
use crate::status::InvalidTransition;

/// `Result` with ATP's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a store operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name broke the naming rules.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// Another argument was out of range or malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// No task type has that name.
    #[error("unknown task type {0:?}")]
    TypeNotFound(String),
    /// No such task.
    #[error("no such task: {0}")]
    TaskNotFound(String),
    /// A task with this (type, identifier) exists already.
    #[error("task {identifier:?} of type {task_type:?} already exists")]
    DuplicateTask {
        /// The task's type.
        task_type: String,
        /// The task's identifier.
        identifier: String,
    },
    /// Unregistering a type that still has tasks, without `force`.
    #[error(
        "task type {task_type:?} still has {tasks} task(s); delete them or unregister with force"
    )]
    TypeHasTasks {
        /// The type.
        task_type: String,
        /// How many tasks it has.
        tasks: u64,
    },
    /// The queue holds as many ACCEPTED tasks as this store handle allows.
    #[error("queue full: {limit} task(s) are already waiting")]
    QueueFull {
        /// The configured limit.
        limit: u64,
    },
    /// The serialized input is larger than this store handle allows.
    #[error("input is {size} bytes, the limit is {limit} bytes")]
    InputTooLarge {
        /// Size of the serialized input.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The input does not satisfy the input schema of its type
    /// ([`TypeAbout::input_schema`](crate::TypeAbout::input_schema)).
    #[error(
        "input does not match the input schema of type {task_type:?}: {}",
        list(violations)
    )]
    InputInvalid {
        /// The task's type.
        task_type: String,
        /// What is wrong, and where (the first few).
        violations: Vec<crate::about::Violation>,
    },
    /// The type's input schema changed between the check of an input and
    /// its insert (another process registered the type again); nothing
    /// was stored. Stores check again against the new schema and retry on
    /// their own: a caller sees this only if the type keeps changing.
    #[error("task type {task_type:?} changed while the enqueue was checked; try again")]
    TypeChanged {
        /// The type.
        task_type: String,
    },
    /// The task's status does not allow the requested change.
    #[error("task {task}: {source}")]
    InvalidTransition {
        /// The task.
        task: TaskId,
        /// What was refused.
        #[source]
        source: InvalidTransition,
    },
    /// The attempt named by a daemon no longer holds the task: it was
    /// rescued, re-enqueued or restarted elsewhere. Nothing was changed.
    #[error("stale attempt on task {task}: it is no longer held by {holder} under lease {lease}")]
    StaleAttempt {
        /// The task.
        task: TaskId,
        /// The holder named by the late caller.
        holder: crate::id::DaemonId,
        /// The lease named by the late caller.
        lease: u64,
    },
    /// Stored data could not be read back (bad encoding, bad JSON).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database could not be reached; retrying later may succeed.
    #[error("database unavailable: {message}")]
    Unavailable {
        /// What was being done.
        message: String,
        /// The engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Any other engine error, with what was being done.
    #[error("database error while {context}: {source}")]
    Database {
        /// What was being done.
        context: String,
        /// The engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No schedule has that name.
    #[error("no such schedule: {0:?}")]
    ScheduleNotFound(String),
}

fn list(violations: &[crate::about::Violation]) -> String {
    let named: Vec<String> = violations.iter().map(ToString::to_string).collect();
    named.join("; ")
}

impl Error {
    /// True for errors that a retry might cure (connection loss).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// True for "no such type", "no such task" and "no such schedule".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::TypeNotFound(_) | Error::TaskNotFound(_) | Error::ScheduleNotFound(_)
        )
    }
}
