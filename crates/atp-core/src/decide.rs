//! The store's decisions, with no I/O.
//!
//! Both engines fetch a task's state, ask this module what follows from it,
//! and write what it says with a compare-and-set on the state they read.
//! So every rule about a held task (who may change it, into what, with which
//! log line, what a release or a rescue makes of it, what an enqueue
//! creates) is written once, here, and tested without a database; the
//! engines differ only in their SQL. Every move goes through
//! [`Transition`]'s table.
//!
//! It lives in `atp-core` beside [`Transition`] and [`StatusChange`] because
//! these are the rules of the [`Store`](crate::store::Store) contract, not
//! of one engine: a third engine (or an in-memory fake) would reuse them.

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::id::{DaemonId, TaskId, TaskIdentifier, TypeName};
use crate::messages;
use crate::status::{InvalidTransition, Status, Transition, after_release};
use crate::store::ClaimParams;
use crate::task::{Attempt, ChangeKind, Queued, Retry, StatusChange, Task, TaskRef};
use crate::task_type::RetryPolicy;

/// What a fenced check reads about a task: enough to decide any change a
/// holder, a rescue or an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskState {
    /// Current status.
    pub status: Status,
    /// Current holder (`None` while queued).
    pub holder: Option<DaemonId>,
    /// Current claim count.
    pub lease: u64,
    /// Starts so far.
    pub starts: u32,
    /// The type's start limit.
    pub max_starts: u32,
    /// The type's retry policy.
    pub retry: Option<RetryPolicy>,
}

impl TaskState {
    /// Applies a decided move, so that a later item of the same batch sees
    /// what an earlier one did (as the row will after the write).
    pub fn apply(&mut self, decided: &Move) {
        self.status = decided.to;
        if decided.clears_holder {
            self.holder = None;
        }
        if decided.counts_start {
            self.starts += 1;
        }
    }
}

/// A decided move: from which status (the compare-and-set), to which, and
/// the log line to write with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The status the decision was made on; the write must still find it.
    pub from: Status,
    /// The status to write.
    pub to: Status,
    /// The log record's message.
    pub message: String,
    /// Whether the move counts a start: SCHEDULED → RUNNING, or a rescue of
    /// a SCHEDULED task (see [`release`]).
    pub counts_start: bool,
    /// For a move into the queue: how long until the task is due again
    /// (a retry's back-off); `None` means at once.
    pub due_in: Option<std::time::Duration>,
    /// Whether the write clears the task's holder: every move into the
    /// queue, and a rescue that FAILs the task (its attempt did not end it,
    /// so [`check_held`] must find that attempt stale, as after a
    /// re-enqueue).
    pub clears_holder: bool,
    /// For a move into the queue: whether the task keeps its place (its
    /// enqueue and due times) instead of going to the back. A task its
    /// holder hands back unstarted (claimed ahead, SCHEDULED) never left
    /// the queue as far as fairness goes.
    pub keeps_place: bool,
}

impl Move {
    fn new(from: Status, to: Status, message: String) -> Self {
        Move {
            from,
            to,
            message: safe_text(&message).into_owned(),
            counts_start: false,
            due_in: None,
            clears_holder: to == Status::Accepted,
            keeps_place: false,
        }
    }

    /// Whether the move puts the task back in the queue (the engines then
    /// clear its holder, move it to the back of the FIFO and count the entry).
    pub fn enters_queue(&self) -> bool {
        self.to == Status::Accepted
    }
}

/// `text` as every engine can store it: each NUL (U+0000, which
/// PostgreSQL's text refuses) becomes U+FFFD, the replacement character. A
/// log or progress message is for people to read, and a handler's failure
/// message built from a program's stderr must never make the write that
/// records the failure fail.
pub fn safe_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// The refusal of a late caller: `a` no longer holds the task.
pub fn stale(a: &Attempt) -> Error {
    Error::StaleAttempt {
        task: a.task,
        holder: a.holder,
        lease: a.lease,
    }
}

fn refused(task: TaskId, source: InvalidTransition) -> Error {
    Error::InvalidTransition { task, source }
}

fn checked(task: TaskId, transition: Transition, from: Status) -> Result<Status> {
    transition
        .check(from)
        .map_err(|source| refused(task, source))
}

/// The refusal for a task that is not there.
pub fn not_found(task: TaskId) -> Error {
    Error::TaskNotFound(TaskRef::Id(task).to_string())
}

/// Confirms that `a` is the task's current attempt (held, or ended by this
/// very attempt). `TaskNotFound` when the task is gone (`None`),
/// `StaleAttempt` otherwise. A CANCELLED task was ended by an operator, never
/// by its attempt: the attempt is stale (a cancel also clears the holder, see
/// [`cancel`]; this keeps it so whatever the row says).
pub fn check_held<'s>(found: Option<&'s TaskState>, a: &Attempt) -> Result<&'s TaskState> {
    let state = found.ok_or_else(|| not_found(a.task))?;
    let same_attempt = state.holder == Some(a.holder) && state.lease == a.lease;
    let ended_by_it = state.status.is_terminal() && state.status != Status::Cancelled;
    if !same_attempt || !(state.status.is_held() || ended_by_it) {
        return Err(stale(a));
    }
    Ok(state)
}

/// Like [`check_held`], but an attempt that already ended counts as stale:
/// for heartbeats, progress and other changes only a live attempt makes.
pub fn check_live<'s>(found: Option<&'s TaskState>, a: &Attempt) -> Result<&'s TaskState> {
    let state = check_held(found, a)?;
    if state.status.is_held() {
        Ok(state)
    } else {
        Err(stale(a))
    }
}

/// Starts a claimed task: SCHEDULED → RUNNING, one more start, logged with
/// the start number.
pub fn start(found: Option<&TaskState>, a: &Attempt) -> Result<Move> {
    let state = check_held(found, a)?;
    let to = checked(a.task, Transition::Start, state.status)?;
    let start = state.starts + 1;
    Ok(Move {
        counts_start: true,
        ..Move::new(
            state.status,
            to,
            messages::started(a.holder, start, state.max_starts),
        )
    })
}

/// Decides a holder's change: `Ok(None)` when the change leaves a task this
/// attempt already ended alone, else the move to write, or the refusal.
pub fn change(found: Option<&TaskState>, c: &StatusChange) -> Result<Option<Move>> {
    let a = c.attempt();
    let state = check_held(found, &a)?;
    if c.leaves_terminal() && state.status.is_terminal() {
        return Ok(None);
    }
    let transition = match c.kind() {
        ChangeKind::Start => return start(Some(state), &a).map(Some),
        ChangeKind::Resume => Transition::Resume,
        ChangeKind::Pause => Transition::Pause,
        ChangeKind::Finish => Transition::Finish,
        ChangeKind::Fail => {
            // Only while holding it, retried or not: the retry's move into
            // the queue is a re-enqueue, which the table also allows from a
            // final status (an operator's), and an attempt that ended its
            // task must not reopen it.
            if !state.status.is_held() {
                return Err(refused(
                    a.task,
                    InvalidTransition {
                        transition: Transition::Fail,
                        from: state.status,
                    },
                ));
            }
            if let Some(delay) = retry_delay(c.retry(), state.retry.as_ref(), a.task, state.starts)
            {
                return retry(state, a.task, c.message(), delay).map(Some);
            }
            Transition::Fail
        }
        ChangeKind::HandBack => {
            // Only while holding it: an operator's re-enqueue may also leave
            // a final status, a holder's hand-back may not.
            if !state.status.is_held() {
                return Err(refused(
                    a.task,
                    InvalidTransition {
                        transition: Transition::Reenqueue,
                        from: state.status,
                    },
                ));
            }
            return release(state, Release::HandBack(c.message())).map(Some);
        }
    };
    let to = checked(a.task, transition, state.status)?;
    Ok(Some(Move::new(state.status, to, c.message().to_owned())))
}

/// The delay before a failed task's next start, when the failure is
/// retried at all: the handler's own delay, else the type's policy for the
/// `failed_start`-th start; `None` for a final failure (no policy, or the
/// handler said never). Starts left are checked by the caller.
pub fn retry_delay(
    retry: Retry,
    policy: Option<&RetryPolicy>,
    task: TaskId,
    failed_start: u32,
) -> Option<std::time::Duration> {
    match (retry, policy) {
        (Retry::After(delay), _) => Some(delay),
        (Retry::ByPolicy, Some(policy)) => Some(policy.delay(task.0, failed_start)),
        (Retry::ByPolicy, None) | (Retry::Never, _) => None,
    }
}

/// A failed attempt's task: back to the queue, due after `delay`, while it
/// has starts left (logged "Failed: …; start N of M after D"), else FAILED
/// with the handler's message and a note that no start was left.
fn retry(
    state: &TaskState,
    task: TaskId,
    message: &str,
    delay: std::time::Duration,
) -> Result<Move> {
    if state.starts >= state.max_starts {
        let to = checked(task, Transition::Fail, state.status)?;
        return Ok(Move::new(
            state.status,
            to,
            messages::retries_exhausted(message, state.max_starts),
        ));
    }
    let to = checked(task, Transition::Reenqueue, state.status)?;
    Ok(Move {
        due_in: Some(delay),
        ..Move::new(
            state.status,
            to,
            messages::retrying(message, state.starts + 1, state.max_starts, delay),
        )
    })
}

/// Why a held task leaves its holder without ending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Release<'a> {
    /// The holder hands it back, for this reason.
    HandBack(&'a str),
    /// No update within the type's timeout.
    Abandoned {
        /// The type's timeout.
        timeout_secs: f64,
    },
    /// Its holder stopped heartbeating (or never registered).
    HolderDead {
        /// The holder.
        holder: DaemonId,
        /// The silence that declared it dead.
        silent_secs: f64,
    },
}

/// Where a released task goes: back to the queue (a re-enqueue), or FAILED
/// once it has used all its starts, so that nothing loops forever; and the
/// log line that says why.
///
/// A task rescued while SCHEDULED may have begun without its start being
/// written yet (a holder starts a task claimed ahead as its handler begins
/// and writes the start after: [`StatusChange::start`]), so the rescue counts
/// that start: a handler that kills its daemon at once still uses up its
/// starts instead of looping. A task its holder hands back while SCHEDULED
/// never began (the holder knows): no start is counted, and it keeps its
/// place in the queue.
pub fn release(state: &TaskState, why: Release<'_>) -> Result<Move> {
    let rescued = !matches!(why, Release::HandBack(_));
    let unseen_start = rescued && state.status == Status::Scheduled;
    let max = state.max_starts;
    let starts = state.starts + u32::from(unseen_start);
    let (transition, message) = match (after_release(starts, max), why) {
        (Status::Failed, Release::HandBack(reason)) => {
            (Transition::Fail, messages::released_failed(reason, max))
        }
        (_, Release::HandBack(reason)) => (Transition::Reenqueue, reason.to_owned()),
        (Status::Failed, Release::Abandoned { timeout_secs }) => (
            Transition::Fail,
            messages::abandoned_failed(timeout_secs, max),
        ),
        (_, Release::Abandoned { timeout_secs }) => (
            Transition::Reenqueue,
            messages::abandoned_requeued(timeout_secs, starts, max),
        ),
        (
            Status::Failed,
            Release::HolderDead {
                holder,
                silent_secs,
            },
        ) => (
            Transition::Fail,
            messages::rescued_failed(holder, silent_secs, max),
        ),
        (
            _,
            Release::HolderDead {
                holder,
                silent_secs,
            },
        ) => (
            Transition::Reenqueue,
            messages::rescued(holder, silent_secs),
        ),
    };
    // Rescues only ever select held tasks; the check keeps it so.
    if !state.status.is_held() {
        return Err(Error::Corrupt(format!(
            "a task that is {} was released",
            state.status
        )));
    }
    let to = transition
        .check(state.status)
        .map_err(|e| Error::Corrupt(e.to_string()))?;
    let message = if unseen_start {
        messages::with_unseen_start(&message, starts)
    } else {
        message
    };
    // A holder that hands back its last start ended the task itself; a
    // rescue ends it for the attempt, which is fenced out like any other
    // attempt a rescue takes a task from.
    Ok(Move {
        clears_holder: to == Status::Accepted || rescued,
        counts_start: unseen_start,
        keeps_place: to == Status::Accepted && !rescued && state.status == Status::Scheduled,
        ..Move::new(state.status, to, message)
    })
}

/// An operator's re-enqueue from any status but ACCEPTED, logged with
/// `message` or the default one.
pub fn reenqueue(task: TaskId, from: Status, message: &str) -> Result<Move> {
    let to = checked(task, Transition::Reenqueue, from)?;
    let message = if message.is_empty() {
        messages::REENQUEUED
    } else {
        message
    };
    Ok(Move::new(from, to, message.to_owned()))
}

/// An operator's cancellation of a queued or held task, logged with
/// `message` ("Cancelled: …") or the default line. What the engines write
/// with it:
/// - from ACCEPTED the task leaves the queue (count a queue exit, `out += 1`,
///   so the queue size stays exact) and never runs;
/// - from SCHEDULED, RUNNING or PAUSED the task becomes CANCELLED at once,
///   whoever holds it, and its holder is cleared: the holder's attempt is
///   then fenced out by [`check_held`] (every later change, heartbeat,
///   progress or response of it is `StaleAttempt`), and the engines tell the
///   holder (see `Store::task_cancel`).
///
/// FINISHED, FAILED and CANCELLED tasks have ended: `InvalidTransition`.
pub fn cancel(task: TaskId, from: Status, message: Option<&str>) -> Result<Cancel> {
    let to = checked(task, Transition::Cancel, from)?;
    Ok(Cancel {
        decided: Move::new(from, to, messages::cancelled(message)),
        leaves_queue: from == Status::Accepted,
        was_held: from.is_held(),
    })
}

/// A decided cancellation (see [`cancel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    /// The move to write (to CANCELLED), compare-and-set on `from`.
    pub decided: Move,
    /// The task was queued: count a queue exit.
    pub leaves_queue: bool,
    /// The task was held: clear its holder and tell that holder.
    pub was_held: bool,
}

/// An operator's re-enqueue of every task in status `from` (see
/// [`reenqueue`]): one move for all of them, refused before any row is read
/// when `from` cannot be re-enqueued.
pub fn reenqueue_all(from: Status, message: &str) -> Result<Move> {
    if !Transition::Reenqueue.allows(from) {
        let why = if from == Status::Accepted {
            " (they are in the queue already)"
        } else {
            ""
        };
        return Err(Error::InvalidArgument(format!(
            "tasks that are {from} cannot be re-enqueued{why}"
        )));
    }
    reenqueue(TaskId(0), from, message)
}

/// The task an enqueue creates, as the store returns it (see
/// [`Task::enqueued`], which sits beside the fields it sets).
pub fn enqueued(
    id: TaskId,
    task_type: TypeName,
    identifier: TaskIdentifier,
    at: OffsetDateTime,
    queued: Queued,
) -> Task {
    Task::enqueued(id, task_type, identifier, at, queued)
}

/// The one move a claim makes: its source and target codes. The claim
/// statements of both engines write them as literals (a partial index's
/// predicate must be literal to be used) and assert them against this table
/// at compile time.
pub const CLAIM: (u8, u8) = (
    Transition::Claim.sources()[0].code(),
    Transition::Claim.target().code(),
);

/// The move a start makes, as [`CLAIM`] for the start statements.
pub const START: (u8, u8) = (
    Transition::Start.sources()[0].code(),
    Transition::Start.target().code(),
);

/// Whether a claim can take nothing (a zero limit, or an empty type list),
/// so the engine returns at once without touching the database.
pub fn claims_nothing(params: &ClaimParams) -> bool {
    params.limit == 0 || params.types.as_ref().is_some_and(|t| t.is_empty())
}

/// Refuses a rule whose thresholds are not positive numbers of seconds, or
/// whose threshold for daemons shown gone is the longer one.
pub fn check_silence(rule: &crate::DeadRule) -> Result<()> {
    for secs in [rule.silent_secs, rule.gone_secs] {
        if !(secs.is_finite() && secs > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "silence threshold must be a positive number of seconds, got {secs}"
            )));
        }
    }
    if rule.gone_secs > rule.silent_secs {
        return Err(Error::InvalidArgument(format!(
            "the silence threshold for daemons shown gone ({} s) must not exceed the one for every daemon ({} s)",
            rule.gone_secs, rule.silent_secs
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
