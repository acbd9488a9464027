//! An operator's cancellation of one task (see `Store::task_cancel`), and
//! the notification that tells its holder.

use atp_core::{DaemonId, Result, Task, TaskId, TaskRef, decide};

use super::{Conn, row, task};

/// The channel of cancellations. Its payload is `HOLDER:TASK:SCHEMA`
/// (decimal ids, then `current_schema()` or `''`, which may itself hold
/// colons), parsed by [`parse`].
pub(super) const CHANNEL: &str = "atp_cancelled";

/// Cancels the task in the caller's transaction, as [`decide::cancel`]
/// says: CANCELLED, holder cleared (its attempt is fenced out), logged,
/// counted out of the queue when it was queued; when it was held, a
/// notification on [`CHANNEL`] in the same transaction, delivered to every
/// listener at commit (and dropped on rollback).
pub(super) async fn cancel(c: Conn<'_>, task: &TaskRef, message: Option<&str>) -> Result<Task> {
    let sql = format!(
        "SELECT t.id, t.status, t.holder FROM {} WHERE {{task}} FOR NO KEY UPDATE OF t",
        row::TASK_FROM
    );
    let rows = task::by_ref(c, "locking a task", &sql, task).await?;
    let r = rows
        .first()
        .ok_or_else(|| atp_core::Error::TaskNotFound(task.to_string()))?;
    let id: i64 = row::get(r, 0)?;
    let status = row::status_of(row::get(r, 1)?)?;
    let holder: Option<i64> = row::get(r, 2)?;
    let cancel = decide::cancel(TaskId(id), status, message)?;
    let sql = format!(
        "WITH t AS (
             UPDATE atp_task SET status = $3, holder = NULL, updated_at = now()
             WHERE id = $1 AND status = $2 RETURNING *
         ), logged AS (
             INSERT INTO atp_task_log (task_id, time, status, message) SELECT id, now(), $3, $4 FROM t
         ), counted AS (
             UPDATE atp_queue_counter SET value = value + 1
             WHERE name = 'out' AND shard = 0 AND $5 AND EXISTS (SELECT 1 FROM t)
         )
         SELECT {} FROM t JOIN atp_task_type y ON y.id = t.type_id",
        row::TASK_COLUMNS
    );
    let rows = c
        .query(
            "cancelling a task",
            &sql,
            &[
                &id,
                &row::code(cancel.decided.from),
                &row::code(cancel.decided.to),
                &cancel.decided.message,
                &cancel.leaves_queue,
            ],
        )
        .await?;
    let cancelled = rows.first().map_or_else(
        || Err(atp_core::Error::TaskNotFound(task.to_string())),
        row::task,
    )?;
    if let Some(holder) = holder.filter(|_| cancel.was_held) {
        c.execute(
            "telling a holder of a cancellation",
            "SELECT pg_notify($1, $2 || coalesce(current_schema(), ''))",
            &[&CHANNEL, &format!("{holder}:{id}:")],
        )
        .await?;
    }
    Ok(cancelled)
}

/// The holder and task of a cancellation notification for `schema`;
/// `None` for another schema's (or a malformed payload).
pub(super) fn parse(payload: &str, schema: &str) -> Option<(DaemonId, TaskId)> {
    let mut parts = payload.splitn(3, ':');
    let holder: i64 = parts.next()?.parse().ok()?;
    let task: i64 = parts.next()?.parse().ok()?;
    (parts.next()? == schema).then_some((DaemonId::from_db(holder), TaskId(task)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_holder_task_and_schema() {
        assert_eq!(
            parse("-5:42:atp:x", "atp:x"),
            Some((DaemonId::from_db(-5), TaskId(42)))
        );
        assert_eq!(parse("1:2:", ""), Some((DaemonId(1), TaskId(2))));
        assert_eq!(parse("1:2:other", "mine"), None);
        assert_eq!(parse("1:2", ""), None);
        assert_eq!(parse("x:2:", ""), None);
    }
}
