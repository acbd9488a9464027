//! Operators' acts on many tasks at once: re-enqueue every task in a status.

use atp_core::{BulkReenqueue, Result, decide};
use tokio_postgres::types::ToSql;

use super::{Conn, row, task_type};

/// Locks every task in `bulk.status` (of the type, if given) in id order,
/// then in one statement resets them, logs each, counts them into the queue
/// and notifies `atp_tasks` (delivered at commit), as
/// `task::reenqueue` does for one. A row that left the status while the
/// lock waited is skipped by the lock's re-check.
pub(super) async fn reenqueue_all(c: Conn<'_>, bulk: &BulkReenqueue) -> Result<u64> {
    let decided = decide::reenqueue_all(bulk.status, &bulk.message)?;
    let status = row::code(decided.from);
    let to = row::code(decided.to);
    let type_id = match &bulk.task_type {
        Some(name) => Some(task_type::id_of(c, name).await?),
        None => None,
    };
    let mut args: Vec<&(dyn ToSql + Sync)> = vec![&status, &to, &decided.message];
    let scope = match &type_id {
        Some(type_id) => {
            args.push(type_id);
            "status = $1 AND type_id = $4"
        }
        None => "status = $1",
    };
    let sql = format!(
        "WITH picked AS (
             SELECT id FROM atp_task WHERE {scope} ORDER BY id FOR NO KEY UPDATE
         ), t AS (
             UPDATE atp_task SET status = $2, holder = NULL, starts = 0, progress_percent = NULL,
                 progress_message = NULL, updated_at = now(), enqueued_at = now(), due_at = now(),
                 delayed = false
             FROM picked WHERE atp_task.id = picked.id AND atp_task.status = $1
             RETURNING atp_task.id
         ), logged AS (
             INSERT INTO atp_task_log (task_id, time, status, message)
             SELECT id, now(), $2, $3 FROM t ORDER BY id
         ), counted AS (
             UPDATE atp_queue_counter SET value = value + (SELECT count(*) FROM t)
             WHERE name = 'in' AND shard = 0 AND EXISTS (SELECT 1 FROM t)
             RETURNING pg_notify('atp_tasks', coalesce(current_schema(), ''))
         )
         SELECT count(*) FROM t"
    );
    let r = c.query_one("re-enqueueing tasks", &sql, &args).await?;
    let moved: i64 = row::get(&r, 0)?;
    Ok(moved as u64)
}
