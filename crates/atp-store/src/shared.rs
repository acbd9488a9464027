//! Engine-independent checks and shaping, so both engines validate and
//! word things the same way.

use std::borrow::Cow;

use atp_core::decide::{self, safe_text};
use atp_core::store::{ClaimParams, StoreOptions};
use atp_core::{
    DaemonId, Error, Progress, ReapedDaemon, Rescued, Result, Status, StatusChange, Task,
    TaskCursor, TaskId, TaskIdentifier, TaskMessagePage, TaskPage, TaskWithMessage, TypeName,
    messages, payload,
};

/// A task validated and serialized for insertion.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub task_type: TypeName,
    pub identifier: TaskIdentifier,
    /// The input as JSON text.
    pub input: String,
    /// The first log line.
    pub message: String,
    /// The priority asked for; `None` takes the type's default.
    pub priority: Option<i32>,
    /// When it may run, if not at once (validated).
    pub due: Option<atp_core::Due>,
    /// The input schema revision its input was checked against, or
    /// [`UNCHECKED_REV`].
    pub schema_rev: i64,
}

/// The schema revision an insert names when it checked nothing (a
/// schedule's occurrence: its input was checked when the schedule was
/// made); the engines' inserts take any revision then.
pub(crate) const UNCHECKED_REV: i64 = -1;

/// Validates and serializes tasks before any transaction starts, so a bad
/// batch costs the database nothing; `revs` are the input schema revisions
/// each input was checked against ([`crate::input_check`]), in order.
pub(crate) fn prepare_tasks(
    tasks: &[NewTask],
    options: &StoreOptions,
    revs: &[i64],
) -> Result<Vec<Prepared>> {
    tasks
        .iter()
        .zip(revs)
        .map(|(t, &schema_rev)| {
            let input = serde_json::to_string(&t.input)
                .map_err(|e| Error::InvalidArgument(format!("input is not serializable: {e}")))?;
            if input.len() > options.max_input_bytes {
                return Err(Error::InputTooLarge {
                    size: input.len(),
                    limit: options.max_input_bytes,
                });
            }
            let message = match &t.message {
                Some(m) if !m.is_empty() => {
                    check_message(m)?;
                    safe_text(m).into_owned()
                }
                _ => messages::ENQUEUED.to_owned(),
            };
            if let Some(due) = &t.due {
                due.validate()?;
            }
            Ok(Prepared {
                task_type: t.task_type.clone(),
                identifier: t.identifier.clone(),
                input,
                message,
                priority: t.priority,
                due: t.due,
                schema_rev,
            })
        })
        .collect()
}

use atp_core::NewTask;
use atp_core::limits::{self, MAX_MESSAGE_BYTES, MAX_PROGRESS_CHARS};

/// How long after now a decided move into the queue makes the task due,
/// in microseconds (0: at once; a retry's back-off otherwise).
pub(crate) fn delay_micros(decided: &atp_core::decide::Move) -> i64 {
    decided
        .due_in
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Refuses over-long log messages.
pub(crate) fn check_message(message: &str) -> Result<()> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(Error::InvalidArgument(format!(
            "log message is {} bytes, the limit is {MAX_MESSAGE_BYTES}",
            message.len()
        )));
    }
    Ok(())
}

/// Checks what a holder may ask for before touching the database.
pub(crate) fn validate_change(change: &StatusChange) -> Result<()> {
    check_message(change.message())?;
    if let Some(r) = change.response() {
        payload::validate_mime(&r.mime_type)?;
    }
    Ok(())
}

/// A claim's parameters as the engines write them (the SCHEDULED message
/// made safe, see [`safe_text`]), or `None` when the claim can take nothing
/// (a zero limit, an empty type list) and no engine need be asked.
pub(crate) fn claim_params(params: &ClaimParams) -> Option<Cow<'_, ClaimParams>> {
    if decide::claims_nothing(params) {
        return None;
    }
    Some(match safe_text(&params.message) {
        Cow::Borrowed(_) => Cow::Borrowed(params),
        Cow::Owned(message) => Cow::Owned(ClaimParams {
            message,
            ..params.clone()
        }),
    })
}

/// Percent in 0–100, message of bounded length; returned with its message
/// made safe (see [`safe_text`]).
pub(crate) fn validate_progress(progress: &Progress) -> Result<Cow<'_, Progress>> {
    if let Some(p) = progress.percent
        && !limits::is_progress_percent(p)
    {
        return Err(Error::InvalidArgument(format!(
            "progress must be between 0 and 100 percent, got {p}"
        )));
    }
    if progress.message.chars().count() > MAX_PROGRESS_CHARS {
        return Err(Error::InvalidArgument(format!(
            "progress message is longer than {MAX_PROGRESS_CHARS} characters"
        )));
    }
    Ok(match safe_text(&progress.message) {
        Cow::Borrowed(_) => Cow::Borrowed(progress),
        Cow::Owned(message) => Cow::Owned(Progress {
            message,
            ..progress.clone()
        }),
    })
}

/// A held task a clean-up selected for rescue, as both engines read it.
pub(crate) struct Candidate {
    pub id: i64,
    pub state: decide::TaskState,
    pub timeout_secs: f64,
    pub type_name: String,
    pub identifier: String,
}

impl Candidate {
    /// What the rescue did, once `decided` is written.
    pub(crate) fn rescued(self, decided: &decide::Move) -> Result<Rescued> {
        Ok(Rescued {
            id: TaskId(self.id),
            task_type: crate::row::type_name(self.type_name)?,
            identifier: crate::row::identifier_of(self.identifier)?,
            outcome: decided.to,
            starts: self.state.starts + u32::from(decided.counts_start),
        })
    }
}

/// What a dead-daemon reap reports: each removed record, and each rescued
/// task under its holder (a holder that had no record gets an entry too).
pub(crate) struct ReapReport(Vec<ReapedDaemon>);

impl ReapReport {
    /// The report of removing these daemon records (ids as stored).
    pub(crate) fn new(dead: impl IntoIterator<Item = i64>) -> Self {
        ReapReport(
            dead.into_iter()
                .map(|id| ReapedDaemon {
                    id: DaemonId::from_db(id),
                    rescued: Vec::new(),
                })
                .collect(),
        )
    }

    /// Files a rescued task under its holder.
    pub(crate) fn rescued(&mut self, holder: DaemonId, task: Rescued) {
        match self.0.iter_mut().find(|d| d.id == holder) {
            Some(d) => d.rescued.push(task),
            None => self.0.push(ReapedDaemon {
                id: holder,
                rescued: vec![task],
            }),
        }
    }

    pub(crate) fn into_vec(self) -> Vec<ReapedDaemon> {
        self.0
    }
}

/// One page of a listing from up to `limit + 1` tasks (the extra one only
/// says that another page follows).
pub(crate) fn page(mut tasks: Vec<Task>, limit: u32) -> TaskPage {
    let next = if tasks.len() > limit as usize {
        tasks.truncate(limit as usize);
        tasks.last().map(TaskCursor::after)
    } else {
        None
    };
    TaskPage { tasks, next }
}

/// The same page with each task's last message (`None`, a task without a
/// log, reads as empty).
pub(crate) fn message_page(rows: Vec<(Task, Option<String>)>, limit: u32) -> TaskMessagePage {
    let (tasks, messages): (Vec<Task>, Vec<Option<String>>) = rows.into_iter().unzip();
    let page = page(tasks, limit);
    TaskMessagePage {
        tasks: page
            .tasks
            .into_iter()
            .zip(messages)
            .map(|(task, m)| TaskWithMessage {
                task,
                last_message: m.unwrap_or_default(),
            })
            .collect(),
        next: page.next,
    }
}

/// The identifiers starting with `prefix` as a range `lower <= identifier
/// < upper` in code point order, which is the byte order of UTF-8 (SQLite's
/// BINARY collation, PostgreSQL's `COLLATE "C"`): no LIKE, so neither its
/// wildcards (`%`, `_`, `\`) nor SQLite's case-insensitive LIKE apply.
/// `None` for no filter (no or an empty prefix); `upper` is `None` when
/// every character of the prefix is the last code point (no string is
/// greater). NUL is refused: PostgreSQL text cannot hold it, and no
/// identifier contains a control character anyway.
pub(crate) fn prefix_range(prefix: Option<&str>) -> Result<Option<(String, Option<String>)>> {
    let Some(prefix) = prefix.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    if prefix.contains('\0') {
        return Err(Error::InvalidArgument(
            "an identifier prefix cannot contain NUL".to_owned(),
        ));
    }
    Ok(Some((prefix.to_owned(), prefix_upper(prefix))))
}

/// The least string greater than every string starting with `prefix`: the
/// prefix with its last character replaced by the next code point (the
/// surrogate gap skipped), dropping trailing U+10FFFF characters first.
fn prefix_upper(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Totals per status from per-(type, status) counts.
pub(crate) fn sum_by_status(by_type: &[(TypeName, Status, u64)]) -> Vec<(Status, u64)> {
    Status::ALL
        .iter()
        .filter_map(|s| {
            let n: u64 = by_type
                .iter()
                .filter(|(_, st, _)| st == s)
                .map(|(_, _, n)| n)
                .sum();
            (n > 0).then_some((*s, n))
        })
        .collect()
}

/// Collects one item's outcome of a batch call. Domain refusals stay with
/// their item; an engine error or corrupt data aborts (and so rolls back) the whole batch.
pub(crate) fn keep_item<T>(outcome: Result<T>, results: &mut Vec<Result<T>>) -> Result<()> {
    match outcome {
        Err(e @ (Error::Database { .. } | Error::Unavailable { .. } | Error::Corrupt(_))) => Err(e),
        other => {
            results.push(other);
            Ok(())
        }
    }
}

/// Waits for `notify` or for `within`, whichever comes first. Interest is
/// registered before `registered` runs and before anything is awaited, so a
/// `notify_waiters()` from the moment this is called on is never missed.
pub(crate) async fn wait_notified(
    notify: &tokio::sync::Notify,
    within: std::time::Duration,
    registered: impl FnOnce(),
) {
    let notified = notify.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    registered();
    tokio::select! {
        () = notified => {}
        () = tokio::time::sleep(within) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_range;

    fn upper(prefix: &str) -> Option<String> {
        prefix_range(Some(prefix)).unwrap().unwrap().1
    }

    #[test]
    fn a_prefix_is_bounded_by_its_last_character_s_successor() {
        assert_eq!(upper("ab").as_deref(), Some("ac"));
        assert_eq!(upper("a%").as_deref(), Some("a&"));
        assert_eq!(upper("é").as_deref(), Some("ê"));
        assert_eq!(upper("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(upper("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(upper("\u{10FFFF}\u{10FFFF}"), None);
    }

    #[test]
    fn an_empty_prefix_is_no_filter_and_nul_is_refused() {
        assert_eq!(prefix_range(None).unwrap(), None);
        assert_eq!(prefix_range(Some("")).unwrap(), None);
        assert!(prefix_range(Some("a\0")).is_err());
    }
}
