//! Rows to domain values, for both engines. Each engine reads the columns
//! of [`TASK_COLUMNS`] into a [`TaskRow`] (and a type's into a [`TypeRow`])
//! with its own column types; the domain values are built here, once, with
//! the same checks on stored data.

use atp_core::{
    DaemonId, Error, Handler, Progress, Result, Status, Task, TaskId, TaskIdentifier, TaskType,
    TypeName,
};
use time::OffsetDateTime;

/// The columns a task is read from, for `FROM` [`TASK_FROM`], in the order
/// of [`TaskRow`]'s fields.
pub(crate) const TASK_COLUMNS: &str = "t.id, y.name, t.identifier, t.status, t.inserted_at, \
     t.updated_at, t.enqueued_at, t.starts, t.lease, t.holder, t.progress_percent, t.progress_message";

/// The join every task query uses.
pub(crate) const TASK_FROM: &str = "atp_task t JOIN atp_task_type y ON y.id = t.type_id";

/// A task's columns as an engine read them ([`TASK_COLUMNS`], in order).
pub(crate) struct TaskRow {
    pub id: i64,
    pub type_name: String,
    pub identifier: String,
    pub status: i64,
    pub inserted_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub enqueued_at: OffsetDateTime,
    pub starts: i64,
    pub lease: i64,
    pub holder: Option<i64>,
    pub progress_percent: Option<f64>,
    pub progress_message: Option<String>,
}

impl TaskRow {
    /// The task, or `Corrupt` when a stored value breaks the domain's rules.
    pub(crate) fn into_task(self) -> Result<Task> {
        Ok(Task {
            id: TaskId(self.id),
            task_type: type_name(self.type_name)?,
            identifier: identifier_of(self.identifier)?,
            status: status_of(self.status)?,
            inserted_at: self.inserted_at,
            updated_at: self.updated_at,
            enqueued_at: self.enqueued_at,
            starts: count(self.starts)?,
            lease: lease_of(self.lease)?,
            holder: self.holder.map(DaemonId::from_db),
            progress: match (self.progress_percent, self.progress_message) {
                (None, None) => None,
                (percent, message) => Some(Progress {
                    percent,
                    message: message.unwrap_or_default(),
                }),
            },
        })
    }
}

/// A task type's columns as an engine read them (name, handler, timeout,
/// retention, max starts).
pub(crate) struct TypeRow {
    pub name: String,
    pub handler: String,
    pub timeout_secs: f64,
    pub retention_secs: f64,
    pub max_starts: i64,
}

impl TypeRow {
    /// The type, or `Corrupt`.
    pub(crate) fn into_type(self) -> Result<TaskType> {
        Ok(TaskType {
            name: type_name(self.name)?,
            handler: Handler::new(self.handler).map_err(corrupt)?,
            timeout_secs: self.timeout_secs,
            retention_secs: self.retention_secs,
            max_starts: count(self.max_starts)?,
        })
    }
}

/// A stored status code.
pub(crate) fn status_of(code: i64) -> Result<Status> {
    Status::from_code(code).ok_or_else(|| Error::Corrupt(format!("unknown status code {code}")))
}

/// A stored non-negative count (starts, max starts).
pub(crate) fn count(raw: i64) -> Result<u32> {
    u32::try_from(raw).map_err(|_| Error::Corrupt(format!("count {raw} out of range")))
}

/// A stored lease.
pub(crate) fn lease_of(raw: i64) -> Result<u64> {
    u64::try_from(raw).map_err(|_| Error::Corrupt(format!("negative lease {raw}")))
}

/// A stored type name.
pub(crate) fn type_name(raw: String) -> Result<TypeName> {
    TypeName::new(raw).map_err(corrupt)
}

/// A stored task identifier.
pub(crate) fn identifier_of(raw: String) -> Result<TaskIdentifier> {
    TaskIdentifier::new(raw).map_err(corrupt)
}

fn corrupt(e: atp_core::id::InvalidName) -> Error {
    Error::Corrupt(e.to_string())
}
