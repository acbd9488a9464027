//! Periodic tasks: a named cron expression in an IANA time zone that
//! enqueues a task of one type at every occurrence. Pure: parsing, "the
//! next occurrence after", and which occurrences a daemon's tick must
//! enqueue; the stores keep schedules and enqueue occurrences
//! ([`crate::Store::schedule_enqueue`]), the daemon ticks.
//!
//! # Exactly once, without a leader
//! Every daemon ticks every schedule. An occurrence becomes a task whose
//! identifier is the schedule's name and the occurrence's UTC time
//! ([`Schedule::identifier_for`]), enqueued in the same transaction that
//! moves the schedule's `last_enqueued` forward by compare-and-set
//! (only to a later time). A second daemon loses the compare-and-set, and so
//! does any daemon after the task was retired (deleted): the schedule
//! already passed that occurrence. The identifier's uniqueness within the
//! type is the second lock on the same door.
//!
//! # Late and missed occurrences
//! An occurrence up to [`MISSED_AFTER`] old is *late*, not missed: a tick
//! enqueues every late occurrence, so a slow tick, a busy database or a
//! daemon restart loses none. Older ones are *missed* (no daemon ran, or
//! the schedule was paused): under [`CatchUp::Last`] a tick that has no
//! late occurrence to enqueue enqueues the most recent missed one, so the
//! work runs once for the whole gap; under [`CatchUp::None`] missed
//! occurrences are skipped. Occurrences before the schedule's creation are
//! never enqueued.

use std::fmt;
use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Error;
use crate::id::{InvalidName, TaskIdentifier, TypeName};
use crate::task::NewTask;

#[cfg(test)]
mod tests;

/// How old an occurrence may be and still be enqueued as merely late:
/// older ones count as missed (see the module docs).
pub const MISSED_AFTER: time::Duration = time::Duration::seconds(30);

/// The suffix an occurrence adds to the schedule's name in its task's
/// identifier: `@` and `YYYY-MM-DDTHH:MM:SSZ`.
const OCCURRENCE_SUFFIX_CHARS: usize = 21;

/// A schedule's name: the rules of every name, at most
/// [`ScheduleName::MAX_CHARS`] characters so that the name and an
/// occurrence time fit a task identifier (64 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ScheduleName(String);

impl ScheduleName {
    /// The longest accepted value, in characters: 43.
    pub const MAX_CHARS: usize = TaskIdentifier::MAX_CHARS - OCCURRENCE_SUFFIX_CHARS;

    /// Validates and wraps `value`.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidName> {
        let value = value.into();
        crate::id::validate("schedule name", &value, Self::MAX_CHARS)?;
        Ok(ScheduleName(value))
    }

    /// The value as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScheduleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ScheduleName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ScheduleName::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What a tick does with occurrences no daemon enqueued in time (older
/// than [`MISSED_AFTER`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Enqueue the most recent missed occurrence (once for the whole gap)
    /// unless a late one is enqueued anyway.
    Last,
    /// Skip missed occurrences, as cron does (the default).
    #[default]
    None,
}

impl CatchUp {
    /// `"last"` or `"none"`, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Last => "last",
            CatchUp::None => "none",
        }
    }
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CatchUp {
    type Err = InvalidSchedule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "last" => Ok(CatchUp::Last),
            "none" => Ok(CatchUp::None),
            other => Err(InvalidSchedule::CatchUp(other.to_owned())),
        }
    }
}

/// Why a schedule's expression, time zone or catch-up was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSchedule {
    /// Not a cron expression this crate accepts.
    #[error(
        "invalid cron expression {expression:?}: {reason} (five fields \"min hour day month weekday\", or six with seconds first)"
    )]
    Expression {
        /// The expression as given.
        expression: String,
        /// Why, from the parser.
        reason: String,
    },
    /// Not an IANA time zone name.
    #[error("unknown time zone {0:?} (an IANA name such as \"Europe/Vienna\" or \"UTC\")")]
    TimeZone(String),
    /// Not `last` or `none`.
    #[error("invalid catch-up {0:?}: \"last\" or \"none\"")]
    CatchUp(String),
}

impl From<InvalidSchedule> for Error {
    fn from(e: InvalidSchedule) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

/// A cron expression in a time zone, both validated: when a schedule
/// fires. Five fields (minute granularity) or six with seconds first;
/// `L`, `W`, `#`, names and `@hourly`-style aliases as croner reads them.
///
/// Daylight saving time (croner's rules, tested in `tests.rs`): a fixed
/// wall-clock time that falls into a gap (spring forward) fires at the
/// first moment after the gap; one that occurs twice (fall back) fires
/// once, at its first occurrence; wildcard and step fields fire on every
/// real instant they match (none in a gap, both passes of a repeated hour).
#[derive(Clone)]
pub struct Recurrence {
    expression: String,
    timezone: String,
    cron: Cron,
    tz: jiff::tz::TimeZone,
}

impl Recurrence {
    /// Longest expression accepted, in bytes.
    pub const MAX_EXPRESSION_BYTES: usize = 256;

    /// Parses `expression` and looks up `timezone` (an IANA name).
    /// An expression that can never fire (`0 0 30 2 *`) is refused too.
    pub fn new(expression: &str, timezone: &str) -> Result<Self, InvalidSchedule> {
        let refuse = |reason: String| InvalidSchedule::Expression {
            expression: expression.to_owned(),
            reason,
        };
        let trimmed = expression.trim();
        if trimmed.len() > Self::MAX_EXPRESSION_BYTES {
            return Err(refuse(format!(
                "longer than {} bytes",
                Self::MAX_EXPRESSION_BYTES
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(trimmed)
            .map_err(|e| refuse(e.to_string()))?;
        let tz = jiff::tz::TimeZone::get(timezone)
            .map_err(|_| InvalidSchedule::TimeZone(timezone.to_owned()))?;
        let timezone = tz.iana_name().unwrap_or(timezone).to_owned();
        let recurrence = Recurrence {
            expression: trimmed.to_owned(),
            timezone,
            cron,
            tz,
        };
        if recurrence.next_after(OffsetDateTime::UNIX_EPOCH).is_none() {
            return Err(refuse("it never matches a date".into()));
        }
        Ok(recurrence)
    }

    /// The expression (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone's IANA name.
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    /// The first occurrence strictly after `t`; `None` past croner's range.
    pub fn next_after(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        let zoned = self.zoned(t)?;
        let next = self.cron.find_next_occurrence(&zoned, false).ok()?;
        from_timestamp(next.timestamp())
    }

    /// The last occurrence at or before `t`.
    pub fn latest_at_or_before(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        let zoned = self.zoned(t)?;
        let previous = self.cron.find_previous_occurrence(&zoned, true).ok()?;
        from_timestamp(previous.timestamp())
    }

    /// Whether `t` is exactly one of the occurrences.
    pub fn is_occurrence(&self, t: OffsetDateTime) -> bool {
        t.nanosecond() == 0 && self.latest_at_or_before(t) == Some(t)
    }

    fn zoned(&self, t: OffsetDateTime) -> Option<jiff::Zoned> {
        let ts = jiff::Timestamp::from_nanosecond(t.unix_timestamp_nanos()).ok()?;
        Some(ts.to_zoned(self.tz.clone()))
    }
}

fn from_timestamp(ts: jiff::Timestamp) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(ts.as_nanosecond()).ok()
}

impl fmt::Debug for Recurrence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recurrence")
            .field("expression", &self.expression)
            .field("timezone", &self.timezone)
            .finish()
    }
}

impl PartialEq for Recurrence {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.timezone == other.timezone
    }
}

impl Eq for Recurrence {}

/// What a producer gives to create or change a schedule
/// ([`crate::Store::schedule_upsert`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    /// Unique among schedules.
    pub name: ScheduleName,
    /// The type of the tasks it enqueues (must be registered).
    pub task_type: TypeName,
    /// When it fires.
    pub recurrence: Recurrence,
    /// The input of every task it enqueues.
    pub input: serde_json::Value,
    /// What to do with missed occurrences.
    pub catch_up: CatchUp,
}

impl NewSchedule {
    /// A schedule with no input (`null`) and the default catch-up.
    pub fn new(name: ScheduleName, task_type: TypeName, recurrence: Recurrence) -> Self {
        NewSchedule {
            name,
            task_type,
            recurrence,
            input: serde_json::Value::Null,
            catch_up: CatchUp::default(),
        }
    }

    /// With this input.
    pub fn with_input(mut self, input: serde_json::Value) -> Self {
        self.input = input;
        self
    }

    /// With this catch-up.
    pub fn with_catch_up(mut self, catch_up: CatchUp) -> Self {
        self.catch_up = catch_up;
        self
    }
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Unique among schedules.
    pub name: ScheduleName,
    /// The type of the tasks it enqueues.
    pub task_type: TypeName,
    /// When it fires.
    pub recurrence: Recurrence,
    /// The input of every task it enqueues.
    pub input: serde_json::Value,
    /// What to do with missed occurrences.
    pub catch_up: CatchUp,
    /// While true, nothing is enqueued (and a resume back-fills only as
    /// [`CatchUp`] says).
    pub paused: bool,
    /// The latest occurrence enqueued (or found already enqueued); only
    /// ever moves forward, and no occurrence at or before it is enqueued.
    pub last_enqueued: Option<OffsetDateTime>,
    /// When it was first stored (the store's clock): no occurrence before
    /// it is enqueued.
    pub created_at: OffsetDateTime,
    /// When it was last changed.
    pub updated_at: OffsetDateTime,
}

impl Schedule {
    /// The identifier of the task for the occurrence at `at`:
    /// `NAME@2026-12-01T10:00:00Z` (UTC, whole seconds).
    pub fn identifier_for(&self, at: OffsetDateTime) -> TaskIdentifier {
        identifier_for(&self.name, at)
    }

    /// The task an occurrence enqueues, with its ACCEPTED log message.
    pub fn task_for(&self, at: OffsetDateTime) -> NewTask {
        NewTask::new(self.task_type.clone(), self.identifier_for(at))
            .with_input(self.input.clone())
            .with_message(format!(
                "Enqueued by schedule {} for {}",
                self.name,
                utc_seconds(at)
            ))
    }

    /// Occurrences before or at this instant are never enqueued: the last
    /// one enqueued, or the creation time.
    pub fn floor(&self) -> OffsetDateTime {
        match self.last_enqueued {
            Some(last) if last >= self.created_at => last,
            _ => self.created_at,
        }
    }

    /// The next occurrence a daemon will enqueue if it runs then: the first
    /// after `now` and after [`Schedule::floor`]; `None` while paused.
    pub fn next_occurrence(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        if self.paused {
            return None;
        }
        self.recurrence.next_after(now.max(self.floor()))
    }

    /// The occurrences a tick at `now` enqueues, oldest first (see the
    /// module docs): every late one (at most 30: the finest expression
    /// fires once a second); failing
    /// that, under [`CatchUp::Last`], the most recent missed one. Nothing
    /// while paused, nothing at or before [`Schedule::floor`].
    pub fn due(&self, now: OffsetDateTime) -> Vec<OffsetDateTime> {
        if self.paused {
            return Vec::new();
        }
        let floor = self.floor();
        let mut due = Vec::new();
        let mut after = floor.max(now - MISSED_AFTER);
        while let Some(next) = self.recurrence.next_after(after) {
            if next > now {
                break;
            }
            due.push(next);
            after = next;
        }
        if due.is_empty() && self.catch_up == CatchUp::Last {
            if let Some(latest) = self.recurrence.latest_at_or_before(now) {
                if latest > floor {
                    due.push(latest);
                }
            }
        }
        due
    }
}

/// `NAME@YYYY-MM-DDTHH:MM:SSZ`, at most 64 characters by the limit on
/// names.
pub fn identifier_for(name: &ScheduleName, at: OffsetDateTime) -> TaskIdentifier {
    TaskIdentifier::new(format!("{name}@{}", utc_seconds(at)))
        .expect("a schedule name and an occurrence always make a valid identifier")
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC.
fn utc_seconds(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// One occurrence of one schedule, to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleOccurrence {
    /// The schedule.
    pub schedule: ScheduleName,
    /// The occurrence (an instant the recurrence matches).
    pub at: OffsetDateTime,
}

/// What [`crate::Store::schedule_enqueue`] did. Only `Enqueued` made a
/// task; the other two are the normal outcome of a lost race and not
/// errors.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleFired {
    /// The task was enqueued and the schedule advanced to the occurrence.
    Enqueued(crate::task::Task),
    /// A task with the occurrence's identifier existed already (made by
    /// hand, say): nothing was enqueued; the schedule advanced (on
    /// PostgreSQL, when the other task committed during this call, at the
    /// next call).
    Existed,
    /// Refused by the compare-and-set: the schedule had already enqueued
    /// this occurrence or a later one (another daemon did; or the task was
    /// retired since), is paused, or the occurrence is before its creation.
    /// Nothing changed.
    Passed,
}
