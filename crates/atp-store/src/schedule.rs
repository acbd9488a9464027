//! Schedules' rows and boundary checks, for both engines: the columns a
//! [`Schedule`] is read from and how, and what is checked before any
//! transaction (the input's size). The SQL is in each engine's
//! `schedule.rs`.

use atp_core::schedule::{NewSchedule, Recurrence, Schedule, ScheduleName};
use atp_core::{Error, Result, StoreOptions, TypeName};

use crate::row::{Columns, type_name};

/// The columns a schedule is read from, for `FROM` [`SCHEDULE_FROM`], in
/// the order [`schedule`] reads them.
pub(crate) const SCHEDULE_COLUMNS: &str = "s.name, y.name, s.expression, s.timezone, s.input, \
     s.catch_up, s.paused, s.last_enqueued_at, s.created_at, s.updated_at";

/// The join every schedule query uses.
pub(crate) const SCHEDULE_FROM: &str = "atp_schedule s JOIN atp_task_type y ON y.id = s.type_id";

/// A schedule from a row selected with [`SCHEDULE_COLUMNS`].
pub(crate) fn schedule(r: &impl Columns) -> Result<Schedule> {
    let text = |i: usize| required(r.text(i)?, i);
    let recurrence = Recurrence::new(&text(2)?, &text(3)?).map_err(corrupt)?;
    Ok(Schedule {
        name: ScheduleName::new(text(0)?).map_err(corrupt)?,
        task_type: type_name(text(1)?)?,
        recurrence,
        input: serde_json::from_str(&text(4)?)
            .map_err(|e| Error::Corrupt(format!("a schedule's input is not JSON: {e}")))?,
        catch_up: text(5)?.parse().map_err(corrupt)?,
        paused: required(r.flag(6)?, 6)?,
        last_enqueued: r.time(7)?,
        created_at: required(r.time(8)?, 8)?,
        updated_at: required(r.time(9)?, 9)?,
    })
}

fn required<T>(value: Option<T>, idx: usize) -> Result<T> {
    value.ok_or_else(|| Error::Corrupt(format!("schedule column {idx} is NULL")))
}

fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("a stored schedule is unreadable: {e}"))
}

/// A schedule as the engines write it: its input serialized and checked
/// against the handle's input limit, before any transaction.
pub(crate) struct PreparedSchedule {
    pub(crate) name: ScheduleName,
    pub(crate) task_type: TypeName,
    pub(crate) expression: String,
    pub(crate) timezone: String,
    pub(crate) input: String,
    pub(crate) catch_up: &'static str,
}

pub(crate) fn prepare(s: &NewSchedule, options: &StoreOptions) -> Result<PreparedSchedule> {
    let input = serde_json::to_string(&s.input)
        .map_err(|e| Error::InvalidArgument(format!("input is not serializable: {e}")))?;
    if input.len() > options.max_input_bytes {
        return Err(Error::InputTooLarge {
            size: input.len(),
            limit: options.max_input_bytes,
        });
    }
    Ok(PreparedSchedule {
        name: s.name.clone(),
        task_type: s.task_type.clone(),
        expression: s.recurrence.expression().to_owned(),
        timezone: s.recurrence.timezone().to_owned(),
        input,
        catch_up: s.catch_up.as_str(),
    })
}

/// Why an occurrence cannot be enqueued whatever the schedule's state.
pub(crate) fn check_occurrence(s: &Schedule, at: time::OffsetDateTime) -> Result<()> {
    if s.recurrence.is_occurrence(at) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{at} is not an occurrence of schedule {:?} ({} in {})",
            s.name.as_str(),
            s.recurrence.expression(),
            s.recurrence.timezone()
        )))
    }
}
