//! Delayed tasks: the claim's promotion of those whose time has come, and
//! how long an idle daemon may sleep before the next one is due.
//!
//! A queued task due later than its enqueue is `delayed` and waits in the
//! small partial index `atp_task_delayed (due_at, id)`, not in the claim's
//! index (migration 0005). Every claim first promotes the delayed tasks
//! that are due (clears the flag) in its own transaction, under the writer
//! lock, so it sees them at once. A claim therefore walks only tasks that
//! may run now, however many wait for later; with nothing due, the
//! promotion is one probe of an empty index range.

use std::time::Duration;

use atp_core::Result;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::db;

/// How many due tasks one claim promotes at most. Larger backlogs coming
/// due at once are promoted over the next claims, in due order; meanwhile
/// a task enqueued for "now" may run before some of them.
const PROMOTE_BATCH: i64 = 1000;

/// Clears `delayed` on up to `?2` tasks due at `?1`, oldest due time
/// first.
pub(super) const PROMOTE: &str = "UPDATE atp_task SET delayed = 0
     WHERE id IN (SELECT id FROM atp_task INDEXED BY atp_task_delayed
                  WHERE status = 1 AND delayed = 1 AND due_at <= ?1
                  ORDER BY due_at, id LIMIT ?2)";

/// The earliest due time of a delayed task: one probe of `atp_task_delayed`.
pub(super) const NEXT_DUE: &str = "SELECT due_at FROM atp_task INDEXED BY atp_task_delayed
     WHERE status = 1 AND delayed = 1 ORDER BY due_at, id LIMIT 1";

/// Clears `delayed` on up to [`PROMOTE_BATCH`] tasks due at `now`, oldest
/// due time first.
pub(super) fn promote(tx: &Transaction<'_>, now: i64) -> Result<usize> {
    tx.prepare_cached(PROMOTE)
        .and_then(|mut s| s.execute(params![now, PROMOTE_BATCH]))
        .map_err(db("promoting due tasks"))
}

/// How long after `now` the earliest delayed task is due (zero when one is
/// due already), `None` when no task is delayed.
pub(super) fn next_due(conn: &Connection, now: i64) -> Result<Option<Duration>> {
    let due: Option<i64> = conn
        .prepare_cached(NEXT_DUE)
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map_err(db("finding the next due task"))?;
    Ok(due.map(|due| Duration::from_micros(u64::try_from(due - now).unwrap_or(0))))
}

#[cfg(test)]
mod tests {
    use atp_core::time::to_micros;
    use atp_core::{
        Due, Handler, NewTask, Store, StoreOptions, TaskIdentifier, TaskType, TypeName,
    };

    use super::super::SqliteStore;

    /// The promotion's boundary, at the engine's own tick (a microsecond):
    /// not one before the due time, exactly at it.
    #[tokio::test]
    async fn a_task_is_promoted_at_its_due_microsecond_not_one_before() {
        let s = SqliteStore::open_memory(StoreOptions::default())
            .await
            .unwrap();
        let t = TypeName::new("t").unwrap();
        s.task_type_upsert(&TaskType::new(t.clone(), Handler::new("h").unwrap()))
            .await
            .unwrap();
        let due = atp_core::time::now() + time::Duration::hours(1);
        let task = s
            .task_enqueue(NewTask::new(t, TaskIdentifier::new("x").unwrap()).with_due(Due::At(due)))
            .await
            .unwrap();
        assert_eq!(task.due_at, due);
        let due = to_micros(due);
        let promoted = |now: i64| s.write(move |tx, _| super::promote(tx, now));
        assert_eq!(promoted(due - 1).await.unwrap(), 0, "one tick early");
        let waiting = s.read(move |c| super::next_due(c, due - 1)).await.unwrap();
        assert_eq!(waiting, Some(std::time::Duration::from_micros(1)));
        assert_eq!(promoted(due).await.unwrap(), 1, "at its due time");
        assert_eq!(
            s.read(move |c| super::next_due(c, due)).await.unwrap(),
            None
        );
    }
}
