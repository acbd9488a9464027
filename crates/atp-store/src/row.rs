//! Rows to domain values, for both engines: a task's columns
//! ([`TASK_COLUMNS`]) and a type's are read into a [`Task`] and a
//! [`TaskType`] here, once, through [`Columns`], which each engine
//! implements for its rows with its own column types. A new column is read
//! in one place.

use atp_core::decide::TaskState;
use atp_core::{
    DaemonId, Error, Handler, Progress, Result, RetryPolicy, Status, Task, TaskId, TaskIdentifier,
    TaskType, TypeAbout, TypeName,
};
use time::OffsetDateTime;

use crate::shared::Candidate;

/// The columns a task is read from, for `FROM` [`TASK_FROM`], in the order
/// [`task`] reads them.
pub(crate) const TASK_COLUMNS: &str = "t.id, y.name, t.identifier, t.status, t.inserted_at, \
     t.updated_at, t.enqueued_at, t.starts, t.lease, t.holder, t.progress_percent, t.progress_message, \
     t.due_at, t.priority";

/// Selected after [`TASK_COLUMNS`] by listings that show why each task is
/// where it is: its newest log message (one `atp_task_log_task` probe).
pub(crate) const LAST_MESSAGE_COLUMN: &str = ", (SELECT l.message FROM atp_task_log l \
     WHERE l.task_id = t.id ORDER BY l.id DESC LIMIT 1)";

/// A task and its last message from a row selected with [`TASK_COLUMNS`]
/// and [`LAST_MESSAGE_COLUMN`].
pub(crate) fn task_with_last_message(r: &impl Columns) -> Result<(Task, Option<String>)> {
    Ok((task(r)?, r.text(14)?))
}

/// The join every task query uses.
pub(crate) const TASK_FROM: &str = "atp_task t JOIN atp_task_type y ON y.id = t.type_id";

/// The values of one row as ATP reads them, whatever the engine stores:
/// integers of any width, floats, text and timestamps; `None` for NULL.
/// A value the column cannot give is `Corrupt`.
pub(crate) trait Columns {
    /// An integer column.
    fn int(&self, idx: usize) -> Result<Option<i64>>;
    /// A floating-point column.
    fn real(&self, idx: usize) -> Result<Option<f64>>;
    /// A text column.
    fn text(&self, idx: usize) -> Result<Option<String>>;
    /// A timestamp column (UTC, microseconds).
    fn time(&self, idx: usize) -> Result<Option<OffsetDateTime>>;
    /// A yes/no column (SQLite's 0/1 integer, PostgreSQL's `BOOLEAN`).
    fn flag(&self, idx: usize) -> Result<Option<bool>>;
}

/// A value that may not be NULL.
fn required<T>(value: Option<T>, idx: usize) -> Result<T> {
    value.ok_or_else(|| Error::Corrupt(format!("column {idx} is NULL")))
}

/// A task from a row selected with [`TASK_COLUMNS`].
pub(crate) fn task(r: &impl Columns) -> Result<Task> {
    let percent = r.real(10)?;
    let message = r.text(11)?;
    Ok(Task {
        id: TaskId(required(r.int(0)?, 0)?),
        task_type: type_name(required(r.text(1)?, 1)?)?,
        identifier: identifier_of(required(r.text(2)?, 2)?)?,
        status: status_of(required(r.int(3)?, 3)?)?,
        inserted_at: required(r.time(4)?, 4)?,
        updated_at: required(r.time(5)?, 5)?,
        enqueued_at: required(r.time(6)?, 6)?,
        starts: count(required(r.int(7)?, 7)?)?,
        lease: lease_of(required(r.int(8)?, 8)?)?,
        holder: r.int(9)?.map(DaemonId::from_db),
        due_at: required(r.time(12)?, 12)?,
        priority: priority_of(required(r.int(13)?, 13)?)?,
        progress: match (percent, message) {
            (None, None) => None,
            (percent, message) => Some(Progress {
                percent,
                message: message.unwrap_or_default(),
            }),
        },
    })
}

/// A task type from a row with its name, handler, timeout, retention, max
/// starts and pause at `offset` and on (each engine's `TYPE_COLUMNS`).
pub(crate) fn task_type(r: &impl Columns, offset: usize) -> Result<TaskType> {
    let at = |i: usize| offset + i;
    Ok(TaskType {
        name: type_name(required(r.text(at(0))?, at(0))?)?,
        handler: Handler::new(required(r.text(at(1))?, at(1))?).map_err(corrupt)?,
        timeout_secs: required(r.real(at(2))?, at(2))?,
        retention_secs: required(r.real(at(3))?, at(3))?,
        max_starts: count(required(r.int(at(4))?, at(4))?)?,
        paused: required(r.flag(at(5))?, at(5))?,
        priority: priority_of(required(r.int(at(6))?, at(6))?)?,
        retry: retry_of(r, at(7))?,
        max_running: r.int(at(9))?.map(count).transpose()?,
        about: about_of(r.text(at(10))?)?,
    })
}

/// A type's description from its JSON column (NULL: none).
pub(crate) fn about_of(text: Option<String>) -> Result<TypeAbout> {
    text.map_or(Ok(TypeAbout::default()), |text| {
        serde_json::from_str(&text)
            .map_err(|e| Error::Corrupt(format!("stored type description is not JSON: {e}")))
    })
}

/// A type's description as stored: JSON text, or NULL when empty.
pub(crate) fn about_text(about: &TypeAbout) -> Result<Option<String>> {
    if about.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(about)
        .map(Some)
        .map_err(|e| Error::InvalidArgument(format!("type description is not serializable: {e}")))
}

/// A type's retry policy from its two columns at `at` (both NULL: none).
fn retry_of(r: &impl Columns, at: usize) -> Result<Option<RetryPolicy>> {
    match (r.real(at)?, r.real(at + 1)?) {
        (Some(delay_secs), Some(max_delay_secs)) => Ok(Some(RetryPolicy {
            delay_secs,
            max_delay_secs,
        })),
        _ => Ok(None),
    }
}

/// A stored priority (an `i32` on both engines).
fn priority_of(value: i64) -> Result<i32> {
    i32::try_from(value).map_err(|_| Error::Corrupt(format!("priority {value} out of range")))
}

/// The columns a task's state is read from ([`state`]), for `FROM`
/// [`TASK_FROM`]: the id, then what the decisions look at.
pub(crate) const STATE_COLUMNS: &str = "t.id, t.status, t.holder, t.lease, t.starts, y.max_starts, \
     y.retry_delay_secs, y.retry_max_delay_secs";

/// How many columns [`STATE_COLUMNS`] has (extra columns follow them).
pub(crate) const STATE_COLUMNS_LEN: usize = 8;

/// A task's id and state, from a row selected with [`STATE_COLUMNS`].
pub(crate) fn state(r: &impl Columns) -> Result<(i64, TaskState)> {
    Ok((
        required(r.int(0)?, 0)?,
        TaskState {
            status: status_of(required(r.int(1)?, 1)?)?,
            holder: r.int(2)?.map(DaemonId::from_db),
            lease: lease_of(required(r.int(3)?, 3)?)?,
            starts: count(required(r.int(4)?, 4)?)?,
            max_starts: count(required(r.int(5)?, 5)?)?,
            retry: retry_of(r, 6)?,
        },
    ))
}

/// The columns a rescue candidate is read from ([`candidate`]):
/// [`STATE_COLUMNS`], then the type's timeout and name and the identifier.
pub(crate) const CANDIDATE_COLUMNS: &str = "t.id, t.status, t.holder, t.lease, t.starts, \
     y.max_starts, y.retry_delay_secs, y.retry_max_delay_secs, y.timeout_secs, y.name, \
     t.identifier";

/// A rescue candidate from a row selected with [`CANDIDATE_COLUMNS`].
pub(crate) fn candidate(r: &impl Columns) -> Result<Candidate> {
    let (id, state) = state(r)?;
    let at = STATE_COLUMNS_LEN;
    Ok(Candidate {
        id,
        state,
        timeout_secs: required(r.real(at)?, at)?,
        type_name: required(r.text(at + 1)?, at + 1)?,
        identifier: required(r.text(at + 2)?, at + 2)?,
    })
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
