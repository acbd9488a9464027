//! Task types.

use atp_core::{Error, Result, Status, TaskType, TypeName};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{db, row};

/// A new type starts as `t.paused` says; an existing one keeps its pause
/// (the update leaves the column alone: see [`TaskType::paused`]).
pub(super) fn upsert(tx: &Transaction<'_>, t: &TaskType, now: i64) -> Result<()> {
    let about = crate::row::about_text(&t.about)?;
    tx.prepare_cached(
        "INSERT INTO atp_task_type (name, handler, timeout_secs, retention_secs, max_starts, paused, priority, retry_delay_secs, retry_max_delay_secs, max_running, about, input_schema_rev, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?6, ?6)
         ON CONFLICT (name) DO UPDATE SET handler = excluded.handler,
             timeout_secs = excluded.timeout_secs, retention_secs = excluded.retention_secs,
             max_starts = excluded.max_starts, priority = excluded.priority,
             retry_delay_secs = excluded.retry_delay_secs,
             retry_max_delay_secs = excluded.retry_max_delay_secs,
             max_running = excluded.max_running,
             about = excluded.about, input_schema_rev = excluded.input_schema_rev,
             updated_at = excluded.updated_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            t.name.as_str(),
            t.handler.as_str(),
            t.timeout_secs,
            t.retention_secs,
            i64::from(t.max_starts),
            now,
            t.paused,
            t.priority,
            t.retry.map(|r| r.delay_secs),
            t.retry.map(|r| r.max_delay_secs),
            t.max_running.map(i64::from),
            about,
            t.about.input_schema_rev()
        ])
    })
    .map_err(db("registering a task type"))?;
    Ok(())
}

pub(super) fn get(conn: &Connection, name: &TypeName) -> Result<TaskType> {
    let sql = format!(
        "SELECT {} FROM atp_task_type WHERE name = ?1",
        row::TYPE_COLUMNS
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row([name.as_str()], |r| row::task_type(r, 0))
                .optional()
        })
        .map_err(db("reading a task type"))?
        .ok_or_else(|| Error::TypeNotFound(name.to_string()))?
}

pub(super) fn list(conn: &Connection) -> Result<Vec<TaskType>> {
    let sql = format!(
        "SELECT {} FROM atp_task_type ORDER BY name",
        row::TYPE_COLUMNS
    );
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(db("listing task types"))?;
    let rows = stmt
        .query_map([], |r| row::task_type(r, 0))
        .map_err(db("listing task types"))?;
    rows.map(|r| r.map_err(db("listing task types"))?).collect()
}

/// Pauses or resumes the type; returns it as it now is (`TypeNotFound`
/// when the update matched nothing). Claims run under the same writer lock,
/// so none can overlap the change.
pub(super) fn set_paused(
    tx: &Transaction<'_>,
    name: &TypeName,
    paused: bool,
    now: i64,
) -> Result<TaskType> {
    tx.prepare_cached("UPDATE atp_task_type SET paused = ?2, updated_at = ?3 WHERE name = ?1")
        .and_then(|mut s| s.execute(params![name.as_str(), paused, now]))
        .map_err(db("pausing or resuming a task type"))?;
    get(tx, name)
}

/// The id of a type, or `TypeNotFound`.
/// The type's id and the priority of its tasks enqueued without one.
/// What an enqueue needs of a type: its id, its default priority and its
/// input schema revision (`input_check.rs`).
pub(super) fn for_enqueue(conn: &Connection, name: &TypeName) -> Result<(i64, i32, i64)> {
    conn.prepare_cached("SELECT id, priority, input_schema_rev FROM atp_task_type WHERE name = ?1")
        .and_then(|mut s| {
            s.query_row([name.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(db("looking up a task type"))?
        .ok_or_else(|| Error::TypeNotFound(name.to_string()))
}

/// A type's description and input schema revision as stored, for the
/// enqueue's check (`input_check.rs`); `None` when there is no such type.
pub(super) fn input_schema(
    conn: &Connection,
    name: &TypeName,
) -> Result<Option<(atp_core::TypeAbout, i64)>> {
    let found: Option<(Option<String>, i64)> = conn
        .prepare_cached("SELECT about, input_schema_rev FROM atp_task_type WHERE name = ?1")
        .and_then(|mut s| {
            s.query_row([name.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db("reading a type's input schema"))?;
    found
        .map(|(about, rev)| Ok((crate::row::about_of(about)?, rev)))
        .transpose()
}

pub(super) fn id_of(conn: &Connection, name: &TypeName) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM atp_task_type WHERE name = ?1")
        .and_then(|mut s| s.query_row([name.as_str()], |r| r.get(0)).optional())
        .map_err(db("looking up a task type"))?
        .ok_or_else(|| Error::TypeNotFound(name.to_string()))
}

pub(super) fn delete(tx: &Transaction<'_>, name: &TypeName, force: bool) -> Result<u64> {
    let type_id = id_of(tx, name)?;
    let (tasks, queued): (i64, i64) = tx
        .query_row(
            "SELECT count(*), coalesce(sum(status = ?2), 0) FROM atp_task WHERE type_id = ?1",
            params![type_id, Status::Accepted.code()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db("counting a type's tasks"))?;
    if tasks > 0 && !force {
        return Err(Error::TypeHasTasks {
            task_type: name.to_string(),
            tasks: tasks as u64,
        });
    }
    tx.execute("DELETE FROM atp_task WHERE type_id = ?1", [type_id])
        .map_err(db("deleting a type's tasks"))?;
    super::task::count_queue_exits(tx, queued)?;
    tx.execute("DELETE FROM atp_task_type WHERE id = ?1", [type_id])
        .map_err(db("deleting a task type"))?;
    Ok(tasks as u64)
}
