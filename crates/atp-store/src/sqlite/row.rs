//! SQLite rows into the shared row shapes ([`crate::row`]).

use atp_core::time::from_micros;
use atp_core::{Result, Task, TaskType};
use rusqlite::Row;

pub(super) use crate::row::{TASK_COLUMNS, TASK_FROM, identifier_of, status_of, type_name};
use crate::row::{TaskRow, TypeRow};

/// A task from a row selected with [`TASK_COLUMNS`].
pub(super) fn task(row: &Row<'_>) -> rusqlite::Result<Result<Task>> {
    Ok(TaskRow {
        id: row.get(0)?,
        type_name: row.get(1)?,
        identifier: row.get(2)?,
        status: row.get(3)?,
        inserted_at: from_micros(row.get(4)?),
        updated_at: from_micros(row.get(5)?),
        enqueued_at: from_micros(row.get(6)?),
        starts: row.get(7)?,
        lease: row.get(8)?,
        holder: row.get(9)?,
        progress_percent: row.get(10)?,
        progress_message: row.get(11)?,
    }
    .into_task())
}

/// The columns [`task_type`] reads from `atp_task_type`.
pub(super) const TYPE_COLUMNS: &str = "name, handler, timeout_secs, retention_secs, max_starts";

/// A task type from a row selected with [`TYPE_COLUMNS`] (at `offset`).
pub(super) fn task_type(row: &Row<'_>, offset: usize) -> rusqlite::Result<Result<TaskType>> {
    Ok(TypeRow {
        name: row.get(offset)?,
        handler: row.get(offset + 1)?,
        timeout_secs: row.get(offset + 2)?,
        retention_secs: row.get(offset + 3)?,
        max_starts: row.get(offset + 4)?,
    }
    .into_type())
}
