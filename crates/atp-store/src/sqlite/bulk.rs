//! Operators' acts on many tasks at once: re-enqueue every task in a status.

use atp_core::{BulkReenqueue, Result, decide};
use rusqlite::Transaction;
use rusqlite::types::Value;

use super::{db, task, task_type};

/// Logs, then resets, every task in `bulk.status` (of the type, if given)
/// under the writer's one transaction, and counts them into the queue: the
/// log's `INSERT … SELECT` and the `UPDATE` read the same rows, since no
/// other writer runs in between. Walks `atp_task_status_updated` (or
/// `atp_task_type_status_updated` with a type).
pub(super) fn reenqueue_all(tx: &Transaction<'_>, bulk: &BulkReenqueue, now: i64) -> Result<u64> {
    let decided = decide::reenqueue_all(bulk.status, &bulk.message)?;
    let mut scope = String::from("status = ?1");
    let mut args = vec![Value::Integer(bulk.status.code().into())];
    if let Some(name) = &bulk.task_type {
        scope.push_str(" AND type_id = ?2");
        args.push(Value::Integer(task_type::id_of(tx, name)?));
    }
    let at = args.len() + 1;
    let mut log_args = args.clone();
    log_args.extend([
        Value::Integer(now),
        Value::Integer(decided.to.code().into()),
        Value::Text(decided.message.clone()),
    ]);
    tx.prepare_cached(&format!(
        "INSERT INTO atp_task_log (task_id, time, status, message)
         SELECT id, ?{at}, ?{}, ?{} FROM atp_task WHERE {scope} ORDER BY id",
        at + 1,
        at + 2
    ))
    .and_then(|mut s| s.execute(rusqlite::params_from_iter(log_args)))
    .map_err(db("logging a bulk re-enqueue"))?;
    args.push(Value::Integer(now));
    let moved = tx
        .prepare_cached(&format!(
            "UPDATE atp_task SET status = {}, holder = NULL, starts = 0, progress_percent = NULL,
                 progress_message = NULL, updated_at = ?{at}, enqueued_at = ?{at}, due_at = ?{at},
                 delayed = 0
             WHERE {scope}",
            decided.to.code()
        ))
        .and_then(|mut s| s.execute(rusqlite::params_from_iter(args)))
        .map_err(db("re-enqueueing tasks"))?;
    task::count_queue_entries(tx, moved as i64)?;
    Ok(moved as u64)
}
