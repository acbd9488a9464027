//! SQLite rows as [`Columns`] (integers, reals, text; times as
//! microseconds since the epoch).

use atp_core::time::from_micros;
use atp_core::{Error, Result, Task, TaskType};
use rusqlite::Row;
use rusqlite::types::FromSql;
use time::OffsetDateTime;

use crate::row::{self, Columns};
pub(super) use crate::row::{TASK_COLUMNS, TASK_FROM, identifier_of, status_of, type_name};

fn get<T: FromSql>(r: &Row<'_>, idx: usize) -> Result<Option<T>> {
    r.get(idx)
        .map_err(|e| Error::Corrupt(format!("column {idx} cannot be read: {e}")))
}

impl Columns for Row<'_> {
    fn int(&self, idx: usize) -> Result<Option<i64>> {
        get(self, idx)
    }

    fn real(&self, idx: usize) -> Result<Option<f64>> {
        get(self, idx)
    }

    fn text(&self, idx: usize) -> Result<Option<String>> {
        get(self, idx)
    }

    fn time(&self, idx: usize) -> Result<Option<OffsetDateTime>> {
        Ok(get::<i64>(self, idx)?.map(from_micros))
    }

    fn flag(&self, idx: usize) -> Result<Option<bool>> {
        get(self, idx)
    }
}

/// A task from a row selected with [`TASK_COLUMNS`] (the shape
/// `query_map` wants).
pub(super) fn task(r: &Row<'_>) -> rusqlite::Result<Result<Task>> {
    Ok(row::task(r))
}

/// The columns [`task_type`] reads from `atp_task_type`.
pub(super) const TYPE_COLUMNS: &str = "name, handler, timeout_secs, retention_secs, max_starts, paused, priority, \
     retry_delay_secs, retry_max_delay_secs, max_running, about";

/// A task type from a row selected with [`TYPE_COLUMNS`] (at `offset`).
pub(super) fn task_type(r: &Row<'_>, offset: usize) -> rusqlite::Result<Result<TaskType>> {
    Ok(row::task_type(r, offset))
}
