//! An operator's cancellation of one task (see `Store::task_cancel`).

use atp_core::{DaemonId, Result, Task, TaskId, TaskRef, decide};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{db, task};

/// Cancels the task under the writer's transaction, as
/// [`decide::cancel`] says: CANCELLED, holder cleared (its attempt is
/// fenced out), logged, and counted out of the queue when it was queued.
/// Returns the task and, when it was held, its holder, whom the caller
/// tells after the commit.
pub(super) fn cancel(
    tx: &Transaction<'_>,
    task: &TaskRef,
    message: Option<&str>,
    now: i64,
) -> Result<(Task, Option<DaemonId>)> {
    let (id, status) = task::locate(tx, task)?;
    let cancel = decide::cancel(TaskId(id), status, message)?;
    let held_by: Option<i64> = tx
        .prepare_cached("SELECT holder FROM atp_task WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(db("reading a task's holder"))?
        .flatten();
    let changed = tx
        .prepare_cached(
            "UPDATE atp_task SET status = ?3, holder = NULL, updated_at = ?4
             WHERE id = ?1 AND status = ?2",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                cancel.decided.from.code(),
                cancel.decided.to.code(),
                now
            ])
        })
        .map_err(db("cancelling a task"))?;
    if changed != 1 {
        // The writer lock makes this impossible: nobody wrote in between.
        return Err(atp_core::Error::Corrupt(
            "a task changed under the writer lock".into(),
        ));
    }
    task::write_log(tx, id, cancel.decided.to, &cancel.decided.message, now)?;
    if cancel.leaves_queue {
        task::count_queue_exits(tx, 1)?;
    }
    let told = held_by.filter(|_| cancel.was_held).map(DaemonId::from_db);
    Ok((task::get_by_id(tx, id)?, told))
}
