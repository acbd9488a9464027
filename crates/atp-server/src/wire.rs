//! The JSON shapes ATP shows the outside world: the HTTP API and
//! `atp --json` print the same objects, built here, so a script can switch
//! between the two without translating.
//!
//! Times are RFC 3339 in UTC; statuses come as the name and the original's
//! numeric code.

use atp_core::schedule::{CatchUp, NewSchedule, Recurrence, Schedule, ScheduleName};
use atp_core::{DaemonInfo, LogRecord, Status, Task, TaskCounts, TaskType};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

/// RFC 3339, UTC.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// What a `status_code` field means: every code with its name, from
/// [`Status::ALL`], so the text cannot drift from the table. The OpenAPI
/// document's `status_code` fields carry it (see `api::StatusCodes`).
pub fn status_codes_text() -> String {
    let codes: Vec<String> = Status::ALL
        .iter()
        .map(|s| format!("{} {}", s.code(), s.name()))
        .collect();
    format!(
        "The original's numeric code of the status: {}.",
        codes.join(", ")
    )
}

/// A task's status name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatusName {
    /// Code 0, reserved by the original; never stored.
    Undefined,
    /// Waiting in the queue.
    Accepted,
    /// Claimed by a daemon, not started yet.
    Scheduled,
    /// A handler runs it.
    Running,
    /// Its handler paused it.
    Paused,
    /// Done.
    Finished,
    /// Given up on.
    Failed,
    /// Stopped by an operator (queued or held); not a failure.
    Cancelled,
}

impl From<Status> for StatusName {
    fn from(s: Status) -> Self {
        match s {
            Status::Undefined => StatusName::Undefined,
            Status::Accepted => StatusName::Accepted,
            Status::Scheduled => StatusName::Scheduled,
            Status::Running => StatusName::Running,
            Status::Paused => StatusName::Paused,
            Status::Finished => StatusName::Finished,
            Status::Failed => StatusName::Failed,
            Status::Cancelled => StatusName::Cancelled,
        }
    }
}

impl From<StatusName> for Status {
    fn from(s: StatusName) -> Self {
        match s {
            StatusName::Undefined => Status::Undefined,
            StatusName::Accepted => Status::Accepted,
            StatusName::Scheduled => Status::Scheduled,
            StatusName::Running => Status::Running,
            StatusName::Paused => Status::Paused,
            StatusName::Finished => Status::Finished,
            StatusName::Failed => Status::Failed,
            StatusName::Cancelled => Status::Cancelled,
        }
    }
}

/// A task (without its input, log and response, which have their own
/// addresses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    /// Database id.
    pub id: i64,
    /// The task type's name.
    #[serde(rename = "type")]
    pub task_type: String,
    /// Unique within its type.
    pub identifier: String,
    /// Current status.
    pub status: StatusName,
    /// The original's numeric code of the status (the document lists
    /// them: [`status_codes_text`]).
    pub status_code: u8,
    /// How many times a handler was started on it.
    pub starts: u32,
    /// The daemon (`0x…`) that holds it (SCHEDULED, RUNNING, PAUSED) or
    /// ran it to its end (FINISHED, FAILED); `null` while queued and once
    /// CANCELLED (the cancel took the task from its holder).
    pub holder: Option<String>,
    /// What its handler last reported.
    pub progress: Option<ProgressView>,
    /// When it was first enqueued.
    pub inserted_at: String,
    /// Its last change.
    pub updated_at: String,
    /// When it last entered the queue.
    pub enqueued_at: String,
    /// When it may be claimed, at the earliest: `enqueued_at` unless it
    /// was delayed. Queued tasks run by priority, then due time, then
    /// enqueue time.
    pub due_at: String,
    /// Higher runs first; FIFO within a priority.
    pub priority: i32,
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> Self {
        TaskView {
            id: t.id.0,
            task_type: t.task_type.as_str().to_owned(),
            identifier: t.identifier.as_str().to_owned(),
            status: t.status.into(),
            status_code: t.status.code(),
            starts: t.starts,
            holder: t.holder.map(|h| h.to_string()),
            progress: t.progress.as_ref().map(|p| ProgressView {
                percent: p.percent,
                message: p.message.clone(),
            }),
            inserted_at: rfc3339(t.inserted_at),
            updated_at: rfc3339(t.updated_at),
            enqueued_at: rfc3339(t.enqueued_at),
            due_at: rfc3339(t.due_at),
            priority: t.priority,
        }
    }
}

/// A handler's progress report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    /// 0–100, when the handler knows.
    pub percent: Option<f64>,
    /// What it is doing.
    pub message: String,
}

/// One status change of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogRecordView {
    /// When.
    pub time: String,
    /// The status entered.
    pub status: StatusName,
    /// Its numeric code (the document lists them: [`status_codes_text`]).
    pub status_code: u8,
    /// Why.
    pub message: String,
}

impl From<&LogRecord> for LogRecordView {
    fn from(r: &LogRecord) -> Self {
        LogRecordView {
            time: rfc3339(r.time),
            status: r.status.into(),
            status_code: r.status.code(),
            message: r.message.clone(),
        }
    }
}

/// A task type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskTypeView {
    /// Unique name.
    pub name: String,
    /// What runs its tasks (`builtin:NAME`, `exec:PROGRAM ARGS`, or a
    /// name a program registered).
    pub handler: String,
    /// An unfinished task not updated for this long is abandoned and
    /// re-enqueued.
    pub timeout_secs: f64,
    /// Finished tasks older than this are deleted; negative keeps them.
    pub retention_secs: f64,
    /// Starts before a task FAILS instead of being re-enqueued.
    pub max_starts: u32,
    /// While true, no daemon claims its tasks (enqueues are still accepted,
    /// running tasks go on). Changed only by `POST …/pause` and `…/resume`:
    /// registering the type again keeps it.
    #[serde(default)]
    pub paused: bool,
    /// The priority of its tasks enqueued without one (higher runs first).
    #[serde(default)]
    pub priority: i32,
    /// How failed tasks are retried; `null`: a failure is final.
    #[serde(default)]
    pub retry: Option<RetryView>,
    /// At most this many of its tasks run at once across every daemon;
    /// `null`: no limit.
    #[serde(default)]
    pub max_running: Option<u32>,
    /// A short human title.
    #[serde(default)]
    pub title: Option<String>,
    /// What the type does, for people choosing it.
    #[serde(default)]
    pub description: Option<String>,
    /// Words to find it by.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The version of its interface (`1.0.0` unless registered with one).
    #[serde(default = "default_version")]
    pub version: String,
    /// A JSON Schema every task input must satisfy: an enqueue whose input
    /// does not is refused (`input-invalid`) and stores nothing. `null`:
    /// any JSON value.
    #[serde(default)]
    pub input_schema: Option<serde_json::Value>,
    /// A JSON Schema of its responses (published for clients; not
    /// enforced).
    #[serde(default)]
    pub output_schema: Option<serde_json::Value>,
    /// The longest a client may wait for one of its tasks to end in one
    /// request (OGC synchronous execution), in seconds; `null`: clients
    /// follow the task instead.
    #[serde(default)]
    pub sync_wait_secs: Option<f64>,
}

fn default_version() -> String {
    atp_core::TypeAbout::DEFAULT_VERSION.to_owned()
}

/// A type's retry policy: the first retry after `delay_secs`, each next
/// after twice the previous, at most `max_delay_secs`, each shortened by up
/// to 25 % (jitter), while the task has starts left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RetryView {
    /// Seconds before the first retry.
    pub delay_secs: f64,
    /// The longest wait between retries, in seconds.
    pub max_delay_secs: f64,
}

impl From<&TaskType> for TaskTypeView {
    fn from(t: &TaskType) -> Self {
        TaskTypeView {
            name: t.name.as_str().to_owned(),
            handler: t.handler.as_str().to_owned(),
            timeout_secs: t.timeout_secs,
            retention_secs: t.retention_secs,
            max_starts: t.max_starts,
            paused: t.paused,
            priority: t.priority,
            retry: t.retry.map(|r| RetryView {
                delay_secs: r.delay_secs,
                max_delay_secs: r.max_delay_secs,
            }),
            max_running: t.max_running,
            title: t.about.title.clone(),
            description: t.about.description.clone(),
            keywords: t.about.keywords.clone(),
            version: t.about.version_or_default().to_owned(),
            input_schema: t.about.input_schema.clone(),
            output_schema: t.about.output_schema.clone(),
            sync_wait_secs: t.about.sync_wait_secs,
        }
    }
}

/// How many tasks of one type are in one status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TypeCount {
    /// The type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// The status.
    pub status: StatusName,
    /// How many.
    pub count: u64,
}

/// Counts, the queue and the daemons, as `atp --json stats` prints them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    /// Tasks by status name (every status, zeros included).
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// Tasks by type and status (non-zero only).
    pub by_type: Vec<TypeCount>,
    /// Tasks waiting (ACCEPTED).
    pub queue_size: u64,
    /// Live daemons.
    pub daemons: usize,
}

impl StatsView {
    /// From the store's counts.
    pub fn new(counts: &TaskCounts, queue_size: u64, daemons: usize) -> Self {
        let mut by_status: std::collections::BTreeMap<String, u64> = Status::ALL
            .iter()
            .filter(|s| **s != Status::Undefined)
            .map(|s| (s.name().to_owned(), 0))
            .collect();
        for (s, n) in &counts.by_status {
            by_status.insert(s.name().to_owned(), *n);
        }
        StatsView {
            by_status,
            by_type: counts
                .by_type
                .iter()
                .map(|(t, s, n)| TypeCount {
                    task_type: t.as_str().to_owned(),
                    status: (*s).into(),
                    count: *n,
                })
                .collect(),
            queue_size,
            daemons,
        }
    }
}

/// A live daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DaemonView {
    /// `0x…`.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// When it started.
    pub started_at: String,
    /// Its last heartbeat.
    pub heartbeat_at: String,
    /// Handlers it can run.
    pub handlers: Vec<String>,
}

impl From<&DaemonInfo> for DaemonView {
    fn from(d: &DaemonInfo) -> Self {
        DaemonView {
            id: d.id.to_string(),
            host: d.host.clone(),
            pid: d.pid,
            started_at: rfc3339(d.started_at),
            heartbeat_at: rfc3339(d.heartbeat_at),
            handlers: d.handlers.clone(),
        }
    }
}

/// What a schedule does with occurrences no daemon enqueued in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CatchUpName {
    /// After a time with no daemon running (or paused), enqueue the most
    /// recent missed occurrence once.
    Last,
    /// Skip missed occurrences (the default, as cron does).
    #[default]
    None,
}

impl From<CatchUp> for CatchUpName {
    fn from(c: CatchUp) -> Self {
        match c {
            CatchUp::Last => CatchUpName::Last,
            CatchUp::None => CatchUpName::None,
        }
    }
}

impl From<CatchUpName> for CatchUp {
    fn from(c: CatchUpName) -> Self {
        match c {
            CatchUpName::Last => CatchUp::Last,
            CatchUpName::None => CatchUp::None,
        }
    }
}

/// A schedule (periodic task): enqueues a task of its type at every
/// occurrence of its cron expression, exactly once across all daemons.
/// Each task's identifier is `NAME@` and the occurrence's UTC time
/// (`nightly@2026-12-01T02:00:00Z`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    /// Unique name (1–43 characters).
    pub name: String,
    /// The type of the tasks it enqueues.
    #[serde(rename = "type")]
    pub task_type: String,
    /// Cron expression: five fields, or six with seconds first.
    pub expression: String,
    /// IANA time zone the expression is read in.
    pub timezone: String,
    /// The input of every task it enqueues.
    pub input: serde_json::Value,
    /// What happens to missed occurrences.
    pub catch_up: CatchUpName,
    /// While true, nothing is enqueued.
    pub paused: bool,
    /// The latest occurrence enqueued (RFC 3339), if any.
    pub last_enqueued_at: Option<String>,
    /// The next occurrence a daemon will enqueue (RFC 3339); none while
    /// paused.
    pub next_occurrence_at: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// When it was last changed (pause and resume included).
    pub updated_at: String,
}

impl ScheduleView {
    /// The schedule as seen at `now` (for its next occurrence).
    pub fn new(s: &Schedule, now: OffsetDateTime) -> Self {
        ScheduleView {
            name: s.name.as_str().to_owned(),
            task_type: s.task_type.as_str().to_owned(),
            expression: s.recurrence.expression().to_owned(),
            timezone: s.recurrence.timezone().to_owned(),
            input: s.input.clone(),
            catch_up: s.catch_up.into(),
            paused: s.paused,
            last_enqueued_at: s.last_enqueued.map(rfc3339),
            next_occurrence_at: s.next_occurrence(now).map(rfc3339),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// The body of `POST /api/v1/schedules`: creates the schedule, or changes
/// the one of that name (keeping its pause and its last occurrence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewScheduleBody {
    /// Unique name (1–43 characters, so that `NAME@occurrence` fits a
    /// task identifier).
    #[schema(value_type = crate::api::schema::ScheduleName)]
    pub name: String,
    /// A registered task type.
    #[serde(rename = "type")]
    #[schema(value_type = crate::api::schema::TypeName)]
    pub task_type: String,
    /// Cron expression: `min hour day month weekday`, or six fields with
    /// seconds first (`*/10 * * * * *`).
    #[schema(example = "0 2 * * *")]
    pub expression: String,
    /// IANA time zone the expression is read in (default `UTC`).
    #[serde(default = "utc")]
    #[schema(example = "Europe/Vienna")]
    pub timezone: String,
    /// The input of every task it enqueues (default `null`).
    #[serde(default)]
    pub input: serde_json::Value,
    /// What happens to missed occurrences (default `none`).
    #[serde(default)]
    pub catch_up: CatchUpName,
}

fn utc() -> String {
    "UTC".to_owned()
}

impl NewScheduleBody {
    /// The schedule it asks for, every field validated (names, expression,
    /// time zone): a refusal is the client's mistake.
    pub fn validate(self) -> atp_core::Result<NewSchedule> {
        let name = ScheduleName::new(self.name)?;
        let task_type = atp_core::TypeName::new(self.task_type)?;
        let recurrence = Recurrence::new(&self.expression, &self.timezone)?;
        Ok(NewSchedule::new(name, task_type, recurrence)
            .with_input(self.input)
            .with_catch_up(self.catch_up.into()))
    }
}
