//! Rows to domain values, shared by the entity modules.

use atp_core::time::from_micros;
use atp_core::{
    DaemonId, Error, Handler, Progress, Result, Status, Task, TaskId, TaskIdentifier, TaskType,
    TypeName,
};
use rusqlite::Row;

/// The columns [`task`] reads, for `FROM atp_task t JOIN atp_task_type y`.
pub(super) const TASK_COLUMNS: &str = "t.id, y.name, t.identifier, t.status, t.inserted_at, \
     t.updated_at, t.enqueued_at, t.starts, t.lease, t.holder, t.progress_percent, t.progress_message";

/// The join every task query uses.
pub(super) const TASK_FROM: &str = "atp_task t JOIN atp_task_type y ON y.id = t.type_id";

/// A task from a row selected with [`TASK_COLUMNS`].
pub(super) fn task(row: &Row<'_>) -> rusqlite::Result<Result<Task>> {
    let status: i64 = row.get(3)?;
    let percent: Option<f64> = row.get(10)?;
    let message: Option<String> = row.get(11)?;
    let holder: Option<i64> = row.get(9)?;
    let name: String = row.get(1)?;
    let identifier: String = row.get(2)?;
    let (id, inserted, updated, enqueued, starts, lease): (i64, i64, i64, i64, i64, i64) = (
        row.get(0)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    );
    Ok((|| {
        Ok(Task {
            id: TaskId(id),
            task_type: type_name(name)?,
            identifier: identifier_of(identifier)?,
            status: status_of(status)?,
            inserted_at: from_micros(inserted),
            updated_at: from_micros(updated),
            enqueued_at: from_micros(enqueued),
            starts: starts as u32,
            lease: lease as u64,
            holder: holder.map(DaemonId::from_db),
            progress: match (percent, message) {
                (None, None) => None,
                (percent, message) => Some(Progress {
                    percent,
                    message: message.unwrap_or_default(),
                }),
            },
        })
    })())
}

/// The columns [`task_type`] reads from `atp_task_type`.
pub(super) const TYPE_COLUMNS: &str = "name, handler, timeout_secs, retention_secs, max_starts";

/// A task type from a row selected with [`TYPE_COLUMNS`] (at `offset`).
pub(super) fn task_type(row: &Row<'_>, offset: usize) -> rusqlite::Result<Result<TaskType>> {
    let name: String = row.get(offset)?;
    let handler: String = row.get(offset + 1)?;
    let timeout_secs: f64 = row.get(offset + 2)?;
    let retention_secs: f64 = row.get(offset + 3)?;
    let max_starts: i64 = row.get(offset + 4)?;
    Ok((|| {
        Ok(TaskType {
            name: type_name(name)?,
            handler: Handler::new(handler).map_err(corrupt)?,
            timeout_secs,
            retention_secs,
            max_starts: max_starts as u32,
        })
    })())
}

pub(super) fn status_of(code: i64) -> Result<Status> {
    Status::from_code(code).ok_or_else(|| Error::Corrupt(format!("unknown status code {code}")))
}

pub(super) fn type_name(raw: String) -> Result<TypeName> {
    TypeName::new(raw).map_err(corrupt)
}

pub(super) fn identifier_of(raw: String) -> Result<TaskIdentifier> {
    TaskIdentifier::new(raw).map_err(corrupt)
}

fn corrupt(e: atp_core::id::InvalidName) -> Error {
    Error::Corrupt(e.to_string())
}
