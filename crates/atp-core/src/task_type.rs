//! Task types: what runs a task, the time limits that apply to it, and
//! whether its tasks may be claimed at all (a type's pause).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{Handler, TypeName};

/// A kind of task: its handler and its limits.
///
/// Registered by producers or operators; read by daemons (handler, timeout,
/// max starts) and by the clean-ups (timeout, retention).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskType {
    /// Unique name.
    pub name: TypeName,
    /// What runs its tasks.
    pub handler: Handler,
    /// Seconds an unfinished task may go without a status change or heartbeat
    /// before it counts as abandoned. Also the bound of one attempt.
    pub timeout_secs: f64,
    /// Seconds a FINISHED or FAILED task is kept; zero or less keeps it
    /// forever.
    pub retention_secs: f64,
    /// How many starts (first run plus restarts) a task gets before it is
    /// FAILED instead of re-enqueued.
    pub max_starts: u32,
    /// While `true`, no daemon claims tasks of this type (enqueues are still
    /// accepted, running attempts go on). The operator's switch, moved only by
    /// [`Store::task_type_set_paused`](crate::Store::task_type_set_paused):
    /// [`Store::task_type_upsert`](crate::Store::task_type_upsert) of an
    /// existing type keeps its stored state (producers register their types
    /// at every start, and that must not resume a paused type), and a new
    /// type starts as this field says.
    #[serde(default)]
    pub paused: bool,
    /// The priority of its tasks that are enqueued without one: higher
    /// runs first (see [`NewTask::priority`](crate::NewTask::priority)).
    #[serde(default)]
    pub priority: i32,
}

impl TaskType {
    /// The original's default timeout: one hour.
    pub const DEFAULT_TIMEOUT_SECS: f64 = 3600.0;
    /// The original's default retention: forever.
    pub const DEFAULT_RETENTION_SECS: f64 = -1.0;
    /// The original's default number of starts.
    pub const DEFAULT_MAX_STARTS: u32 = 3;

    /// A type with the original's defaults.
    pub fn new(name: TypeName, handler: Handler) -> Self {
        TaskType {
            name,
            handler,
            timeout_secs: Self::DEFAULT_TIMEOUT_SECS,
            retention_secs: Self::DEFAULT_RETENTION_SECS,
            max_starts: Self::DEFAULT_MAX_STARTS,
            paused: false,
            priority: 0,
        }
    }

    /// Sets the timeout (validated by [`TaskType::validate`]).
    pub fn with_timeout_secs(mut self, secs: f64) -> Self {
        self.timeout_secs = secs;
        self
    }

    /// Sets the retention.
    pub fn with_retention_secs(mut self, secs: f64) -> Self {
        self.retention_secs = secs;
        self
    }

    /// Sets the max starts.
    pub fn with_max_starts(mut self, max_starts: u32) -> Self {
        self.max_starts = max_starts;
        self
    }

    /// Sets the default priority of its tasks.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Registers the type paused (a new type only: see [`TaskType::paused`]).
    pub fn with_paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }

    /// Whether finished tasks of this type are ever deleted.
    pub fn retains_forever(&self) -> bool {
        self.retention_secs <= 0.0
    }

    /// Checks the numeric limits. Names are valid by construction.
    pub fn validate(&self) -> Result<()> {
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "timeout must be a positive number of seconds, got {}",
                self.timeout_secs
            )));
        }
        if !self.retention_secs.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "retention must be a finite number of seconds, got {}",
                self.retention_secs
            )));
        }
        // Bounded so that `now - retention` stays representable everywhere.
        const MAX_SECS: f64 = 1.0e11;
        if self.timeout_secs > MAX_SECS || self.retention_secs > MAX_SECS {
            return Err(Error::InvalidArgument(format!(
                "timeout and retention must be at most {MAX_SECS} seconds"
            )));
        }
        if self.max_starts < 1 || self.max_starts > i32::MAX as u32 {
            return Err(Error::InvalidArgument(format!(
                "max starts must be at least 1, got {}",
                self.max_starts
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TaskType {
        TaskType::new(
            TypeName::new("t").unwrap(),
            Handler::new("builtin:sum").unwrap(),
        )
    }

    #[test]
    fn defaults_are_the_originals() {
        let t = sample();
        assert_eq!(t.timeout_secs, 3600.0);
        assert_eq!(t.retention_secs, -1.0);
        assert_eq!(t.max_starts, 3);
        assert!(!t.paused, "a new type runs");
        assert!(t.retains_forever());
        assert!(t.validate().is_ok());
    }

    #[test]
    fn bad_limits_are_refused() {
        assert!(sample().with_timeout_secs(0.0).validate().is_err());
        assert!(sample().with_timeout_secs(-1.0).validate().is_err());
        assert!(sample().with_timeout_secs(f64::NAN).validate().is_err());
        assert!(
            sample()
                .with_retention_secs(f64::INFINITY)
                .validate()
                .is_err()
        );
        assert!(sample().with_max_starts(0).validate().is_err());
        assert!(sample().with_retention_secs(0.0).retains_forever());
        assert!(!sample().with_retention_secs(1.0).retains_forever());
    }

    #[test]
    fn a_type_serialized_before_pauses_existed_reads_as_running() {
        let mut old = serde_json::to_value(sample().with_paused(true)).unwrap();
        old.as_object_mut().unwrap().remove("paused");
        let read: TaskType = serde_json::from_value(old).unwrap();
        assert!(!read.paused);
    }
}
