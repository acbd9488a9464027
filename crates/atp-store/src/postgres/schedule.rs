//! Schedules (periodic tasks): their rows, and the one transaction that
//! enqueues an occurrence (see [`enqueue`]).

use atp_core::schedule::{Schedule, ScheduleFired, ScheduleName, ScheduleOccurrence};
use atp_core::{Error, Result, StoreOptions};

use super::{Conn, task};
use crate::schedule::{PreparedSchedule, SCHEDULE_COLUMNS, SCHEDULE_FROM, check_occurrence};

/// Inserts or updates the schedule (one statement: concurrent creations
/// of one name insert once); an existing one keeps its pause, its creation
/// time and its last enqueued occurrence.
pub(super) async fn upsert(c: Conn<'_>, s: &PreparedSchedule) -> Result<Schedule> {
    let stored = c
        .execute(
            "storing a schedule",
            "INSERT INTO atp_schedule (name, type_id, expression, timezone, input, catch_up, created_at, updated_at)
             SELECT $1, y.id, $3, $4, $5, $6, now(), now() FROM atp_task_type y WHERE y.name = $2
             ON CONFLICT (name) DO UPDATE SET type_id = excluded.type_id,
                 expression = excluded.expression, timezone = excluded.timezone,
                 input = excluded.input, catch_up = excluded.catch_up, updated_at = excluded.updated_at",
            &[
                &s.name.as_str(),
                &s.task_type.as_str(),
                &s.expression,
                &s.timezone,
                &s.input,
                &s.catch_up,
            ],
        )
        .await?;
    if stored == 0 {
        return Err(Error::TypeNotFound(s.task_type.to_string()));
    }
    get(c, &s.name).await
}

pub(super) async fn get(c: Conn<'_>, name: &ScheduleName) -> Result<Schedule> {
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM} WHERE s.name = $1");
    match c
        .query_opt("reading a schedule", &sql, &[&name.as_str()])
        .await?
    {
        Some(r) => crate::schedule::schedule(&r),
        None => Err(Error::ScheduleNotFound(name.to_string())),
    }
}

pub(super) async fn list(c: Conn<'_>) -> Result<Vec<Schedule>> {
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM} ORDER BY s.name");
    c.query("listing schedules", &sql, &[])
        .await?
        .iter()
        .map(crate::schedule::schedule)
        .collect()
}

pub(super) async fn delete(c: Conn<'_>, name: &ScheduleName) -> Result<()> {
    let deleted = c
        .execute(
            "deleting a schedule",
            "DELETE FROM atp_schedule WHERE name = $1",
            &[&name.as_str()],
        )
        .await?;
    if deleted == 0 {
        return Err(Error::ScheduleNotFound(name.to_string()));
    }
    Ok(())
}

pub(super) async fn set_paused(c: Conn<'_>, name: &ScheduleName, paused: bool) -> Result<Schedule> {
    c.execute(
        "pausing or resuming a schedule",
        "UPDATE atp_schedule SET paused = $2, updated_at = now() WHERE name = $1",
        &[&name.as_str(), &paused],
    )
    .await?;
    get(c, name).await
}

/// Moves the schedule's last enqueued occurrence forward to `o.at` by
/// compare-and-set and enqueues the occurrence's task, in the caller's one
/// transaction (any error rolls both back). The update locks the
/// schedule's row: a second daemon's update of the same occurrence waits
/// for this commit, then re-checks its condition on the new row (READ
/// COMMITTED) and matches nothing.
pub(super) async fn enqueue(
    c: Conn<'_>,
    o: &ScheduleOccurrence,
    options: &StoreOptions,
) -> Result<ScheduleFired> {
    let s = get(c, &o.schedule).await?;
    check_occurrence(&s, o.at)?;
    let advanced = c
        .execute(
            "advancing a schedule",
            "UPDATE atp_schedule SET last_enqueued_at = $2
             WHERE name = $1 AND NOT paused AND created_at < $2
               AND (last_enqueued_at IS NULL OR last_enqueued_at < $2)",
            &[&o.schedule.as_str(), &o.at],
        )
        .await?;
    if advanced == 0 {
        return Ok(ScheduleFired::Passed);
    }
    let new = s.task_for(o.at);
    let existing = c
        .query_opt(
            "looking up an occurrence's task",
            "SELECT t.id FROM atp_task t JOIN atp_task_type y ON y.id = t.type_id
             WHERE y.name = $1 AND t.identifier = $2",
            &[&new.task_type.as_str(), &new.identifier.as_str()],
        )
        .await?;
    if existing.is_some() {
        return Ok(ScheduleFired::Existed);
    }
    let prepared = task::prepare(&[new], options, &[crate::shared::UNCHECKED_REV])?;
    let task = task::enqueue_in_transaction(c, &prepared[0], options).await?;
    Ok(ScheduleFired::Enqueued(task))
}
