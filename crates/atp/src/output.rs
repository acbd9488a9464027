//! What the command prints: stable JSON shapes for `--json`, plain lines
//! for people, and the exit code of each error kind.

use atp_core::{Error, LogRecord, Task, TaskType};
use serde_json::Value;

/// Exit codes (README "Exit codes").
pub mod exit {
    /// Any other error.
    pub const ERROR: u8 = 1;
    /// The type, task or schedule does not exist.
    pub const NOT_FOUND: u8 = 3;
    /// Duplicate task, a type that still has tasks, or a task whose status
    /// does not allow the change (cancelling one that ended, re-enqueueing
    /// one that waits already): HTTP's 409.
    pub const CONFLICT: u8 = 4;
    /// The queue is full.
    pub const QUEUE_FULL: u8 = 5;
    /// `atp wait`: the task FAILED.
    pub const FAILED: u8 = 6;
    /// `atp wait`: the timeout ran out first.
    pub const TIMED_OUT: u8 = 7;
    /// `atp wait`: the task was CANCELLED.
    pub const CANCELLED: u8 = 8;
    /// The input does not match the type's input schema.
    pub const INPUT_INVALID: u8 = 9;
}

/// The exit code for an error: by the store's error kind when there is one.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(crate::Exit(code)) = e.downcast_ref::<crate::Exit>() {
        return *code;
    }
    match e.downcast_ref::<Error>() {
        Some(Error::TypeNotFound(_) | Error::TaskNotFound(_) | Error::ScheduleNotFound(_)) => {
            exit::NOT_FOUND
        }
        // The same refusals HTTP answers 409 (problem.rs).
        Some(
            Error::DuplicateTask { .. }
            | Error::TypeHasTasks { .. }
            | Error::InvalidTransition { .. },
        ) => exit::CONFLICT,
        Some(Error::QueueFull { .. }) => exit::QUEUE_FULL,
        Some(Error::InputInvalid { .. }) => exit::INPUT_INVALID,
        _ => exit::ERROR,
    }
}

pub use atp_server::wire::rfc3339;

/// A task as `--json` prints it: the HTTP API's task object.
pub fn task_json(t: &Task) -> Value {
    to_json(&atp_server::wire::TaskView::from(t))
}

/// A log record as `--json` prints it.
pub fn log_json(r: &LogRecord) -> Value {
    to_json(&atp_server::wire::LogRecordView::from(r))
}

/// A task type as `--json` prints it.
pub fn type_json(t: &TaskType) -> Value {
    to_json(&atp_server::wire::TaskTypeView::from(t))
}

/// A schedule as `--json` prints it (its next occurrence seen now).
pub fn schedule_json(s: &atp_core::Schedule) -> Value {
    to_json(&atp_server::wire::ScheduleView::new(
        s,
        time::OffsetDateTime::now_utc(),
    ))
}

/// Any wire view as a JSON value (these serialize infallibly: plain
/// strings and numbers).
pub fn to_json(view: &impl serde::Serialize) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

/// How lines for people look: colours and the local time zone, decided once
/// in `main` (the local offset can only be read safely before threads start).
#[derive(Debug, Clone, Copy)]
pub struct Human {
    /// Statuses in the original's colours.
    pub color: bool,
    /// Times shown in this offset.
    pub offset: time::UtcOffset,
}

static HUMAN: std::sync::OnceLock<Human> = std::sync::OnceLock::new();

/// Whether the user asked for no colour: `NO_COLOR` is set (to anything).
/// The one rule for stdout's lines and stderr's logs.
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some()
}

/// Sets the style: colour only on a terminal without `NO_COLOR`; times in
/// the local zone when it can be read, else UTC.
pub fn init_human() {
    use std::io::IsTerminal as _;
    let color = std::io::stdout().is_terminal() && !no_color();
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    let _ = HUMAN.set(Human { color, offset });
}

fn human() -> Human {
    HUMAN.get().copied().unwrap_or(Human {
        color: false,
        offset: time::UtcOffset::UTC,
    })
}

/// The ANSI colour closest to the original's CSS colour for a status.
fn ansi(status: atp_core::Status) -> &'static str {
    match status.color() {
        "green" => "32",
        "red" => "31",
        "blue" => "34",
        "darkcyan" => "36",
        "brown" | "maroon" => "33",
        // CANCELLED: "bright black", the terminal's grey.
        "grey" => "90",
        _ => "35",
    }
}

/// A status name, padded, coloured when the style says so.
pub fn status_text(status: atp_core::Status) -> String {
    let name = format!("{:<9}", status.name());
    if human().color {
        format!("\x1b[{}m{name}\x1b[0m", ansi(status))
    } else {
        name
    }
}

/// A time for people: local zone, to the second.
pub fn local_time(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]"
    );
    t.to_offset(human().offset)
        .format(&format)
        .unwrap_or_else(|_| rfc3339(t))
}

/// One line for people.
pub fn task_line(t: &Task) -> String {
    let progress = t
        .progress
        .as_ref()
        .map(|p| match p.percent {
            Some(pc) => format!("  {pc:.0}% {}", p.message),
            None => format!("  {}", p.message),
        })
        .unwrap_or_default();
    // Only what differs from the plain case: a due time still to come
    // while queued, a priority other than 0.
    let due = if t.status == atp_core::Status::Accepted && t.due_at > t.enqueued_at {
        format!("  due {}", local_time(t.due_at))
    } else {
        String::new()
    };
    let priority = if t.priority != 0 {
        format!("  priority {}", t.priority)
    } else {
        String::new()
    };
    format!(
        "{:>8}  {}  {}/{}  starts {}  updated {}{due}{priority}{progress}",
        t.id.0,
        status_text(t.status),
        t.task_type.as_str(),
        t.identifier.as_str(),
        t.starts,
        local_time(t.updated_at),
    )
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &Value) {
    say!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Writes one line to stdout; a closed pipe ends the process with success
/// (the reader has what it wanted), another write error with exit 1.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("atp: writing to stdout: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use atp_core::Status;

    #[test]
    fn terminal_colours_follow_the_originals_and_cancelled_is_grey() {
        let codes: Vec<_> = Status::ALL.iter().map(|s| super::ansi(*s)).collect();
        assert_eq!(codes, ["35", "33", "36", "32", "33", "34", "31", "90"]);
    }
}
