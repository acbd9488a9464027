//! Task types.

use atp_core::{Error, Result, TaskType, TypeName};

use super::Conn;
use super::row;

/// One statement: `ON CONFLICT` makes concurrent registrations of the same
/// new name safe (one inserts, the others update). A new type starts as
/// `t.paused` says; an existing one keeps its pause (the update leaves the
/// column alone: see [`TaskType::paused`]).
pub(super) async fn upsert(c: Conn<'_>, t: &TaskType) -> Result<()> {
    let max_starts = i32::try_from(t.max_starts).unwrap_or(i32::MAX);
    let about = crate::row::about_text(&t.about)?;
    c.execute(
        "registering a task type",
        "INSERT INTO atp_task_type (name, handler, timeout_secs, retention_secs, max_starts, paused, priority, retry_delay_secs, retry_max_delay_secs, max_running, about, input_schema_rev, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now(), now())
         ON CONFLICT (name) DO UPDATE SET handler = excluded.handler,
             timeout_secs = excluded.timeout_secs, retention_secs = excluded.retention_secs,
             max_starts = excluded.max_starts, priority = excluded.priority,
             retry_delay_secs = excluded.retry_delay_secs,
             retry_max_delay_secs = excluded.retry_max_delay_secs,
             max_running = excluded.max_running,
             about = excluded.about, input_schema_rev = excluded.input_schema_rev,
             updated_at = excluded.updated_at",
        &[
            &t.name.as_str(),
            &t.handler.as_str(),
            &t.timeout_secs,
            &t.retention_secs,
            &max_starts,
            &t.paused,
            &t.priority,
            &t.retry.map(|r| r.delay_secs),
            &t.retry.map(|r| r.max_delay_secs),
            &t.max_running.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            &about,
            &t.about.input_schema_rev(),
        ],
    )
    .await?;
    Ok(())
}

/// Pauses or resumes the type; returns it as it now is. A resume also
/// announces the type's queued tasks to idle daemons (`atp_tasks`, as an
/// enqueue does; delivered at commit). Claims do not lock type rows: one
/// already under way when the pause commits read the type as it was and
/// may still finish; none that starts after it does.
pub(super) async fn set_paused(c: Conn<'_>, name: &TypeName, paused: bool) -> Result<TaskType> {
    let sql = format!(
        "UPDATE atp_task_type y SET paused = $2, updated_at = now() WHERE y.name = $1
         RETURNING {}",
        row::TYPE_COLUMNS
    );
    let found = c
        .query_opt(
            "pausing or resuming a task type",
            &sql,
            &[&name.as_str(), &paused],
        )
        .await?;
    let t = match found {
        Some(r) => row::task_type(&r, 0)?,
        None => return Err(Error::TypeNotFound(name.to_string())),
    };
    if !paused {
        c.execute(
            "announcing a resumed type's tasks",
            "SELECT pg_notify('atp_tasks', coalesce(current_schema(), ''))",
            &[],
        )
        .await?;
    }
    Ok(t)
}

pub(super) async fn get(c: Conn<'_>, name: &TypeName) -> Result<TaskType> {
    let sql = format!(
        "SELECT {} FROM atp_task_type y WHERE y.name = $1",
        row::TYPE_COLUMNS
    );
    let found = c
        .query_opt("reading a task type", &sql, &[&name.as_str()])
        .await?;
    match found {
        Some(r) => row::task_type(&r, 0),
        None => Err(Error::TypeNotFound(name.to_string())),
    }
}

/// All types in byte order of their names, as SQLite sorts them (the
/// database's collation might sort case or accents differently).
pub(super) async fn list(c: Conn<'_>) -> Result<Vec<TaskType>> {
    let sql = format!(
        "SELECT {} FROM atp_task_type y ORDER BY y.name COLLATE \"C\"",
        row::TYPE_COLUMNS
    );
    c.query("listing task types", &sql, &[])
        .await?
        .iter()
        .map(|r| row::task_type(r, 0))
        .collect()
}

/// A type's description and input schema revision as stored, for the
/// enqueue's check (`input_check.rs`); `None` when there is no such type.
pub(super) async fn input_schema(
    c: Conn<'_>,
    name: &TypeName,
) -> Result<Option<(atp_core::TypeAbout, i64)>> {
    let found = c
        .query_opt(
            "reading a type's input schema",
            "SELECT about, input_schema_rev FROM atp_task_type WHERE name = $1",
            &[&name.as_str()],
        )
        .await?;
    found
        .map(|r| {
            let about: Option<String> = row::get(&r, 0)?;
            Ok((crate::row::about_of(about)?, row::get(&r, 1)?))
        })
        .transpose()
}

/// The id of a type, or `TypeNotFound`.
pub(super) async fn id_of(c: Conn<'_>, name: &TypeName) -> Result<i64> {
    let found = c
        .query_opt(
            "looking up a task type",
            "SELECT id FROM atp_task_type WHERE name = $1",
            &[&name.as_str()],
        )
        .await?;
    match found {
        Some(r) => row::get(&r, 0),
        None => Err(Error::TypeNotFound(name.to_string())),
    }
}

/// Locks the type row first: enqueues of the type check their foreign key
/// with a share lock on it, so none can slip a task in between the count and
/// the delete.
pub(super) async fn delete(c: Conn<'_>, name: &TypeName, force: bool) -> Result<u64> {
    let type_id: i64 = match c
        .query_opt(
            "locking a task type",
            "SELECT id FROM atp_task_type WHERE name = $1 FOR UPDATE",
            &[&name.as_str()],
        )
        .await?
    {
        Some(r) => row::get(&r, 0)?,
        None => return Err(Error::TypeNotFound(name.to_string())),
    };
    if !force {
        let r = c
            .query_one(
                "counting a type's tasks",
                "SELECT count(*) FROM atp_task WHERE type_id = $1",
                &[&type_id],
            )
            .await?;
        let tasks: i64 = row::get(&r, 0)?;
        if tasks > 0 {
            return Err(Error::TypeHasTasks {
                task_type: name.to_string(),
                tasks: tasks as u64,
            });
        }
    }
    // The statuses come from the rows as deleted, so a task claimed in the
    // meantime is not counted out of the queue a second time.
    let r = c
        .query_one(
            "deleting a type's tasks",
            "WITH deleted AS (DELETE FROM atp_task WHERE type_id = $1 RETURNING status),
                  counted AS (
                      UPDATE atp_queue_counter
                      SET value = value + (SELECT count(*) FROM deleted WHERE status = 1)
                      WHERE name = 'out' AND shard = 0
                        AND EXISTS (SELECT 1 FROM deleted WHERE status = 1))
             SELECT count(*) FROM deleted",
            &[&type_id],
        )
        .await?;
    let deleted: i64 = row::get(&r, 0)?;
    c.execute(
        "deleting a task type",
        "DELETE FROM atp_task_type WHERE id = $1",
        &[&type_id],
    )
    .await?;
    Ok(deleted as u64)
}
