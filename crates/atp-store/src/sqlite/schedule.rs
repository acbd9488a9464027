//! Schedules (periodic tasks): their rows, and the one transaction that
//! enqueues an occurrence (see [`enqueue`]).

use atp_core::schedule::{Schedule, ScheduleFired, ScheduleName, ScheduleOccurrence};
use atp_core::time::to_micros;
use atp_core::{Error, Result, StoreOptions};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{db, task, task_type};
use crate::schedule::{PreparedSchedule, SCHEDULE_COLUMNS, SCHEDULE_FROM, check_occurrence};

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Schedule>> {
    Ok(crate::schedule::schedule(r))
}

/// Inserts or updates the schedule; an existing one keeps its pause, its
/// creation time and its last enqueued occurrence.
pub(super) fn upsert(tx: &Transaction<'_>, s: &PreparedSchedule, now: i64) -> Result<Schedule> {
    let type_id = task_type::id_of(tx, &s.task_type)?;
    tx.prepare_cached(
        "INSERT INTO atp_schedule (name, type_id, expression, timezone, input, catch_up, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (name) DO UPDATE SET type_id = excluded.type_id,
             expression = excluded.expression, timezone = excluded.timezone,
             input = excluded.input, catch_up = excluded.catch_up, updated_at = excluded.updated_at",
    )
    .and_then(|mut st| {
        st.execute(params![
            s.name.as_str(), type_id, s.expression, s.timezone, s.input, s.catch_up, now
        ])
    })
    .map_err(db("storing a schedule"))?;
    get(tx, &s.name)
}

pub(super) fn get(conn: &Connection, name: &ScheduleName) -> Result<Schedule> {
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM} WHERE s.name = ?1");
    conn.prepare_cached(&sql)
        .and_then(|mut st| st.query_row([name.as_str()], read).optional())
        .map_err(db("reading a schedule"))?
        .ok_or_else(|| Error::ScheduleNotFound(name.to_string()))?
}

pub(super) fn list(conn: &Connection) -> Result<Vec<Schedule>> {
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM} ORDER BY s.name");
    let mut st = conn.prepare_cached(&sql).map_err(db("listing schedules"))?;
    let rows = st.query_map([], read).map_err(db("listing schedules"))?;
    rows.map(|r| r.map_err(db("listing schedules"))?).collect()
}

pub(super) fn delete(tx: &Transaction<'_>, name: &ScheduleName) -> Result<()> {
    let deleted = tx
        .prepare_cached("DELETE FROM atp_schedule WHERE name = ?1")
        .and_then(|mut st| st.execute([name.as_str()]))
        .map_err(db("deleting a schedule"))?;
    if deleted == 0 {
        return Err(Error::ScheduleNotFound(name.to_string()));
    }
    Ok(())
}

pub(super) fn set_paused(
    tx: &Transaction<'_>,
    name: &ScheduleName,
    paused: bool,
    now: i64,
) -> Result<Schedule> {
    tx.prepare_cached("UPDATE atp_schedule SET paused = ?2, updated_at = ?3 WHERE name = ?1")
        .and_then(|mut st| st.execute(params![name.as_str(), paused, now]))
        .map_err(db("pausing or resuming a schedule"))?;
    get(tx, name)
}

/// Moves the schedule's last enqueued occurrence forward to `o.at` by
/// compare-and-set and enqueues the occurrence's task, in the caller's one
/// transaction (any error rolls both back). The writer lock already
/// serializes this process's callers; the compare-and-set is what stops
/// another process, or a later call after the task was retired.
pub(super) fn enqueue(
    tx: &Transaction<'_>,
    o: &ScheduleOccurrence,
    options: &StoreOptions,
    now: i64,
) -> Result<ScheduleFired> {
    let s = get(tx, &o.schedule)?;
    check_occurrence(&s, o.at)?;
    let at = to_micros(o.at);
    let advanced = tx
        .prepare_cached(
            "UPDATE atp_schedule SET last_enqueued_at = ?2
             WHERE name = ?1 AND paused = 0 AND created_at < ?2
               AND (last_enqueued_at IS NULL OR last_enqueued_at < ?2)",
        )
        .and_then(|mut st| st.execute(params![o.schedule.as_str(), at]))
        .map_err(db("advancing a schedule"))?;
    if advanced == 0 {
        return Ok(ScheduleFired::Passed);
    }
    let new = s.task_for(o.at);
    let type_id = task_type::id_of(tx, &new.task_type)?;
    let existing: Option<i64> = tx
        .prepare_cached("SELECT id FROM atp_task WHERE type_id = ?1 AND identifier = ?2")
        .and_then(|mut st| {
            st.query_row(params![type_id, new.identifier.as_str()], |r| r.get(0))
                .optional()
        })
        .map_err(db("looking up an occurrence's task"))?;
    if existing.is_some() {
        return Ok(ScheduleFired::Existed);
    }
    let prepared = task::prepare(&[new], options, &[crate::shared::UNCHECKED_REV])?;
    let task = task::enqueue_one(tx, &prepared, options, now)?;
    Ok(ScheduleFired::Enqueued(task))
}
