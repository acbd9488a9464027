//! The task status and the one table of legal transitions.
//!
//! Every store decides a move through [`crate::decide`], which checks it
//! with [`Transition::check`], and writes it with a compare-and-set on the
//! status it checked, so a transition that is not in this table can never
//! reach the database.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a task stands. Codes, names and colours are the original tracker's.
///
/// Each variant says who moves a task *out* of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[repr(u8)]
pub enum Status {
    /// Code 0. Never stored: kept because the original reserved it.
    Undefined = 0,
    /// Queued. Left by a daemon's claim (to SCHEDULED) or by an operator's
    /// delete.
    Accepted = 1,
    /// Claimed by a daemon, not yet started. Left by that daemon (start,
    /// release, fail) or by the reaper when the daemon is gone.
    Scheduled = 2,
    /// A handler runs it. Left by the holding daemon (finish, fail, pause,
    /// release) or by the reaper when the attempt is abandoned.
    Running = 3,
    /// The handler paused it while holding it. Left like RUNNING.
    Paused = 4,
    /// Done. Left only by an operator's re-enqueue or the retention clean-up.
    Finished = 5,
    /// Given up. Left only by an operator's re-enqueue or the retention
    /// clean-up.
    Failed = 6,
    /// Stopped by an operator: from the queue, or taken from its holder
    /// (whose attempt is then stale). Left only by an operator's re-enqueue
    /// or the retention clean-up. Not in the original tracker: a failure and
    /// a deliberate stop must be told apart.
    Cancelled = 7,
}

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 8] = [
        Status::Undefined,
        Status::Accepted,
        Status::Scheduled,
        Status::Running,
        Status::Paused,
        Status::Finished,
        Status::Failed,
        Status::Cancelled,
    ];

    /// Statuses in which a daemon holds the task (an "attempt" is live).
    pub const HELD: [Status; 3] = [Status::Scheduled, Status::Running, Status::Paused];

    /// Statuses nobody leaves on their own.
    pub const TERMINAL: [Status; 3] = [Status::Finished, Status::Failed, Status::Cancelled];

    /// The numeric code stored in the database and shown to users.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The status with this code.
    pub fn from_code(code: i64) -> Option<Status> {
        Status::ALL
            .iter()
            .copied()
            .find(|s| i64::from(s.code()) == code)
    }

    /// The upper-case name, e.g. `"RUNNING"`.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Undefined => "UNDEFINED",
            Status::Accepted => "ACCEPTED",
            Status::Scheduled => "SCHEDULED",
            Status::Running => "RUNNING",
            Status::Paused => "PAUSED",
            Status::Finished => "FINISHED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
        }
    }

    /// The original tracker's display colour (a CSS colour name; CANCELLED,
    /// which the original did not have, is grey).
    pub const fn color(self) -> &'static str {
        match self {
            Status::Undefined => "magenta",
            Status::Accepted => "brown",
            Status::Scheduled => "darkcyan",
            Status::Running => "green",
            Status::Paused => "maroon",
            Status::Finished => "blue",
            Status::Failed => "red",
            Status::Cancelled => "grey",
        }
    }

    /// True for FINISHED, FAILED and CANCELLED.
    pub fn is_terminal(self) -> bool {
        Status::TERMINAL.contains(&self)
    }

    /// True while a daemon holds the task (SCHEDULED, RUNNING, PAUSED).
    pub fn is_held(self) -> bool {
        Status::HELD.contains(&self)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a task goes when it leaves its holder without ending (abandoned,
/// rescued from a dead daemon, handed back at shutdown): back to the queue,
/// or FAILED once it has used all its starts, so that nothing loops forever.
pub fn after_release(starts: u32, max_starts: u32) -> Status {
    if starts >= max_starts {
        Status::Failed
    } else {
        Status::Accepted
    }
}

/// A status name or code that does not name a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?} (expected a name such as RUNNING or a code 0-7)")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    /// Parses a name in any case (`running`, `RUNNING`) or a code (`3`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if let Ok(code) = trimmed.parse::<i64>() {
            return Status::from_code(code).ok_or_else(|| UnknownStatus(s.to_owned()));
        }
        Status::ALL
            .iter()
            .copied()
            .find(|st| st.name().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A named move between statuses. The store names the transition it wants;
/// [`Transition::check`] says whether the current status allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// A new task enters the queue.
    Enqueue,
    /// A daemon claims a queued task.
    Claim,
    /// The claiming daemon starts the task's handler.
    Start,
    /// The handler pauses.
    Pause,
    /// The handler resumes after a pause.
    Resume,
    /// The task ends well.
    Finish,
    /// The task ends badly.
    Fail,
    /// The task goes back to the queue (operator, reaper, or the holder
    /// handing it back).
    Reenqueue,
    /// An operator stops the task, queued or held (never its holder).
    Cancel,
}

impl Transition {
    /// Every transition.
    pub const ALL: [Transition; 9] = [
        Transition::Enqueue,
        Transition::Claim,
        Transition::Start,
        Transition::Pause,
        Transition::Resume,
        Transition::Finish,
        Transition::Fail,
        Transition::Reenqueue,
        Transition::Cancel,
    ];

    /// The status a task has after this transition.
    pub const fn target(self) -> Status {
        match self {
            Transition::Enqueue | Transition::Reenqueue => Status::Accepted,
            Transition::Claim => Status::Scheduled,
            Transition::Start | Transition::Resume => Status::Running,
            Transition::Pause => Status::Paused,
            Transition::Finish => Status::Finished,
            Transition::Fail => Status::Failed,
            Transition::Cancel => Status::Cancelled,
        }
    }

    /// The statuses this transition may leave. `Enqueue` leaves none: it
    /// creates the task.
    pub const fn sources(self) -> &'static [Status] {
        match self {
            Transition::Enqueue => &[],
            Transition::Claim => &[Status::Accepted],
            Transition::Start => &[Status::Scheduled],
            Transition::Pause => &[Status::Running],
            Transition::Resume => &[Status::Paused],
            Transition::Finish | Transition::Fail => &Status::HELD,
            Transition::Reenqueue => &[
                Status::Scheduled,
                Status::Running,
                Status::Paused,
                Status::Finished,
                Status::Failed,
                Status::Cancelled,
            ],
            Transition::Cancel => &[
                Status::Accepted,
                Status::Scheduled,
                Status::Running,
                Status::Paused,
            ],
        }
    }

    /// Whether a task in `from` may take this transition.
    pub fn allows(self, from: Status) -> bool {
        self.sources().contains(&from)
    }

    /// `Ok(target)` when legal, otherwise the typed refusal.
    pub fn check(self, from: Status) -> Result<Status, InvalidTransition> {
        if self.allows(from) {
            Ok(self.target())
        } else {
            Err(InvalidTransition {
                transition: self,
                from,
            })
        }
    }

    /// Lower-case name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Transition::Enqueue => "enqueue",
            Transition::Claim => "claim",
            Transition::Start => "start",
            Transition::Pause => "pause",
            Transition::Resume => "resume",
            Transition::Finish => "finish",
            Transition::Fail => "fail",
            Transition::Reenqueue => "re-enqueue",
            Transition::Cancel => "cancel",
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A transition the current status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {transition} a task that is {from}")]
pub struct InvalidTransition {
    /// What was asked.
    pub transition: Transition,
    /// The status the task had.
    pub from: Status,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip_in_any_case() {
        for status in Status::ALL {
            assert_eq!(status.name().parse::<Status>(), Ok(status));
            assert_eq!(status.name().to_lowercase().parse::<Status>(), Ok(status));
            assert_eq!(status.code().to_string().parse::<Status>(), Ok(status));
            assert_eq!(Status::from_code(i64::from(status.code())), Some(status));
        }
        assert!("8".parse::<Status>().is_err());
        assert!("done".parse::<Status>().is_err());
        assert!("".parse::<Status>().is_err());
    }

    #[test]
    fn colours_are_the_originals() {
        let colours: Vec<_> = Status::ALL.iter().map(|s| s.color()).collect();
        assert_eq!(
            colours,
            [
                "magenta", "brown", "darkcyan", "green", "maroon", "blue", "red", "grey"
            ]
        );
    }

    #[test]
    fn transition_table_matches_the_specification() {
        use Status::*;
        use Transition::*;
        let legal: &[(Transition, Status)] = &[
            (Claim, Accepted),
            (Start, Scheduled),
            (Pause, Running),
            (Resume, Paused),
            (Finish, Scheduled),
            (Finish, Running),
            (Finish, Paused),
            (Fail, Scheduled),
            (Fail, Running),
            (Fail, Paused),
            (Reenqueue, Scheduled),
            (Reenqueue, Running),
            (Reenqueue, Paused),
            (Reenqueue, Finished),
            (Reenqueue, Failed),
            (Reenqueue, Cancelled),
            (Cancel, Accepted),
            (Cancel, Scheduled),
            (Cancel, Running),
            (Cancel, Paused),
        ];
        for t in Transition::ALL {
            for from in Status::ALL {
                let expected = legal.contains(&(t, from));
                assert_eq!(t.allows(from), expected, "{t} from {from}");
                assert_eq!(t.check(from).is_ok(), expected, "{t} from {from}");
            }
        }
    }

    #[test]
    fn terminal_statuses_are_left_only_by_reenqueue() {
        for from in Status::TERMINAL {
            for t in Transition::ALL {
                assert_eq!(
                    t.allows(from),
                    t == Transition::Reenqueue,
                    "{t} from {from}"
                );
            }
        }
    }

    #[test]
    fn released_tasks_fail_once_their_starts_are_used_up() {
        assert_eq!(after_release(0, 3), Status::Accepted);
        assert_eq!(after_release(2, 3), Status::Accepted);
        assert_eq!(after_release(3, 3), Status::Failed);
        assert_eq!(after_release(4, 3), Status::Failed);
        assert_eq!(after_release(1, 1), Status::Failed);
    }
}
