//! PostgreSQL rows into the shared row shapes ([`crate::row`]), and the
//! column types of this engine (`SMALLINT` status, `INTEGER` counts).

use atp_core::{Error, Result, Status, Task, TaskType};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

pub(super) use crate::row::{TASK_COLUMNS, TASK_FROM, identifier_of, lease_of, type_name};
use crate::row::{TaskRow, TypeRow};

/// Column `idx` of `row`; a value the column type cannot give is corrupt data.
pub(super) fn get<'r, T: FromSql<'r>>(row: &'r Row, idx: usize) -> Result<T> {
    row.try_get(idx)
        .map_err(|e| Error::Corrupt(format!("column {idx} cannot be read: {e}")))
}

/// A task from a row selected with [`TASK_COLUMNS`].
pub(super) fn task(row: &Row) -> Result<Task> {
    TaskRow {
        id: get(row, 0)?,
        type_name: get(row, 1)?,
        identifier: get(row, 2)?,
        status: i64::from(get::<i16>(row, 3)?),
        inserted_at: get(row, 4)?,
        updated_at: get(row, 5)?,
        enqueued_at: get(row, 6)?,
        starts: i64::from(get::<i32>(row, 7)?),
        lease: get(row, 8)?,
        holder: get(row, 9)?,
        progress_percent: get(row, 10)?,
        progress_message: get(row, 11)?,
    }
    .into_task()
}

/// The columns [`task_type`] reads from `atp_task_type` (aliased `y`).
pub(super) const TYPE_COLUMNS: &str =
    "y.name, y.handler, y.timeout_secs, y.retention_secs, y.max_starts";

/// A task type from a row selected with [`TYPE_COLUMNS`] (at `offset`).
pub(super) fn task_type(row: &Row, offset: usize) -> Result<TaskType> {
    TypeRow {
        name: get(row, offset)?,
        handler: get(row, offset + 1)?,
        timeout_secs: get(row, offset + 2)?,
        retention_secs: get(row, offset + 3)?,
        max_starts: i64::from(get::<i32>(row, offset + 4)?),
    }
    .into_type()
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
