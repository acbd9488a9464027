//! PostgreSQL rows as [`Columns`], and the column types of this engine
//! (`SMALLINT` status, `INTEGER` counts, `BIGINT` ids and leases).

use atp_core::{Error, Result, Status, Task, TaskType};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Type};

use crate::row::{self, Columns};
pub(super) use crate::row::{TASK_COLUMNS, TASK_FROM, identifier_of, lease_of, type_name};

/// Column `idx` of `row`; a value the column type cannot give is corrupt data.
pub(super) fn get<'r, T: FromSql<'r>>(row: &'r Row, idx: usize) -> Result<T> {
    row.try_get(idx)
        .map_err(|e| Error::Corrupt(format!("column {idx} cannot be read: {e}")))
}

impl Columns for Row {
    fn int(&self, idx: usize) -> Result<Option<i64>> {
        let ty = self.columns().get(idx).map(|c| c.type_().clone());
        Ok(match ty {
            Some(Type::INT2) => get::<Option<i16>>(self, idx)?.map(i64::from),
            Some(Type::INT4) => get::<Option<i32>>(self, idx)?.map(i64::from),
            _ => get::<Option<i64>>(self, idx)?,
        })
    }

    fn real(&self, idx: usize) -> Result<Option<f64>> {
        get(self, idx)
    }

    fn text(&self, idx: usize) -> Result<Option<String>> {
        get(self, idx)
    }

    fn time(&self, idx: usize) -> Result<Option<OffsetDateTime>> {
        get(self, idx)
    }

    fn flag(&self, idx: usize) -> Result<Option<bool>> {
        get(self, idx)
    }
}

/// A task from a row selected with [`TASK_COLUMNS`].
pub(super) fn task(r: &Row) -> Result<Task> {
    row::task(r)
}

/// The columns [`task_type`] reads from `atp_task_type` (aliased `y`).
pub(super) const TYPE_COLUMNS: &str = "y.name, y.handler, y.timeout_secs, y.retention_secs, y.max_starts, y.paused, y.priority, \
     y.retry_delay_secs, y.retry_max_delay_secs, y.max_running, y.about";

/// A task type from a row selected with [`TYPE_COLUMNS`] (at `offset`).
pub(super) fn task_type(r: &Row, offset: usize) -> Result<TaskType> {
    row::task_type(r, offset)
}

/// The stored code of a status (a `SMALLINT` parameter).
pub(super) fn code(status: Status) -> i16 {
    i16::from(status.code())
}

/// A status from its `SMALLINT` column.
pub(super) fn status_of(code: i16) -> Result<Status> {
    crate::row::status_of(i64::from(code))
}

/// A count from its `INTEGER` column (starts, max starts).
pub(super) fn count(raw: i32) -> Result<u32> {
    crate::row::count(i64::from(raw))
}

/// A lease as the `BIGINT` it is stored as. Leases grow by one per claim, so
/// they never leave the positive range; a caller's out-of-range lease simply
/// matches no row.
pub(super) fn lease_param(lease: u64) -> i64 {
    i64::try_from(lease).unwrap_or(i64::MIN)
}
