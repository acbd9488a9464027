//! Rows to domain values, shared by the entity modules.

use atp_core::{
    DaemonId, Error, Handler, Progress, Result, Status, Task, TaskId, TaskIdentifier, TaskType,
    TypeName,
};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

/// The columns [`task`] reads, for `FROM atp_task t JOIN atp_task_type y`.
pub(super) const TASK_COLUMNS: &str = "t.id, y.name, t.identifier, t.status, t.inserted_at, \
     t.updated_at, t.enqueued_at, t.starts, t.lease, t.holder, t.progress_percent, t.progress_message";

/// The join every task query uses.
pub(super) const TASK_FROM: &str = "atp_task t JOIN atp_task_type y ON y.id = t.type_id";

/// Column `idx` of `row`; a value the column type cannot give is corrupt data.
pub(super) fn get<'r, T: FromSql<'r>>(row: &'r Row, idx: usize) -> Result<T> {
    row.try_get(idx)
        .map_err(|e| Error::Corrupt(format!("column {idx} cannot be read: {e}")))
}

/// A task from a row selected with [`TASK_COLUMNS`].
pub(super) fn task(row: &Row) -> Result<Task> {
    let percent: Option<f64> = get(row, 10)?;
    let message: Option<String> = get(row, 11)?;
    Ok(Task {
        id: TaskId(get(row, 0)?),
        task_type: type_name(get(row, 1)?)?,
        identifier: identifier_of(get(row, 2)?)?,
        status: status_of(get(row, 3)?)?,
        inserted_at: get(row, 4)?,
        updated_at: get(row, 5)?,
        enqueued_at: get(row, 6)?,
        starts: count(get(row, 7)?)?,
        lease: lease_of(get(row, 8)?)?,
        holder: get::<Option<i64>>(row, 9)?.map(DaemonId::from_db),
        progress: match (percent, message) {
            (None, None) => None,
            (percent, message) => Some(Progress {
                percent,
                message: message.unwrap_or_default(),
            }),
        },
    })
}

/// The columns [`task_type`] reads from `atp_task_type` (aliased `y`).
pub(super) const TYPE_COLUMNS: &str =
    "y.name, y.handler, y.timeout_secs, y.retention_secs, y.max_starts";

/// A task type from a row selected with [`TYPE_COLUMNS`] (at `offset`).
pub(super) fn task_type(row: &Row, offset: usize) -> Result<TaskType> {
    Ok(TaskType {
        name: type_name(get(row, offset)?)?,
        handler: Handler::new(get::<String>(row, offset + 1)?).map_err(corrupt)?,
        timeout_secs: get(row, offset + 2)?,
        retention_secs: get(row, offset + 3)?,
        max_starts: count(get(row, offset + 4)?)?,
    })
}

/// The stored code of a status (a `SMALLINT` parameter).
pub(super) fn code(status: Status) -> i16 {
    i16::from(status.code())
}

pub(super) fn status_of(code: i16) -> Result<Status> {
    Status::from_code(i64::from(code))
        .ok_or_else(|| Error::Corrupt(format!("unknown status code {code}")))
}

/// A non-negative `INTEGER` column (starts, max starts).
pub(super) fn count(raw: i32) -> Result<u32> {
    u32::try_from(raw).map_err(|_| Error::Corrupt(format!("negative count {raw}")))
}

/// The `BIGINT` lease column.
pub(super) fn lease_of(raw: i64) -> Result<u64> {
    u64::try_from(raw).map_err(|_| Error::Corrupt(format!("negative lease {raw}")))
}

/// A lease as the `BIGINT` it is stored as. Leases grow by one per claim, so
/// they never leave the positive range; a caller's out-of-range lease simply
/// matches no row.
pub(super) fn lease_param(lease: u64) -> i64 {
    i64::try_from(lease).unwrap_or(i64::MIN)
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
