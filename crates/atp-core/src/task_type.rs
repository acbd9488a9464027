//! Task types: what runs a task, the time limits that apply to it, and
//! whether its tasks may be claimed at all (a type's pause).

use serde::{Deserialize, Serialize};

use crate::about::TypeAbout;
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
    /// What a handler's failure does while starts remain: with a policy, the
    /// task goes back to the queue, due after a growing delay; without one
    /// (the original's way) the failure is final.
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// At most this many of its tasks held (SCHEDULED, RUNNING or PAUSED)
    /// at once, across every daemon on every host; `None`: no limit. A
    /// paused task keeps its place: it is still held.
    #[serde(default)]
    pub max_running: Option<u32>,
    /// What it tells its users: title, description, keywords, version and
    /// schemas. Its input schema is enforced at every enqueue.
    #[serde(default, skip_serializing_if = "TypeAbout::is_empty")]
    pub about: TypeAbout,
}

/// Exponential back-off between the starts of a failing task: the first
/// retry after `delay_secs`, each next one after twice the previous, never
/// more than `max_delay_secs`, each shortened by up to a quarter (jitter,
/// so that tasks that failed together do not all come back together).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Seconds before the first retry.
    pub delay_secs: f64,
    /// The longest delay, in seconds.
    pub max_delay_secs: f64,
}

impl RetryPolicy {
    /// The delay after the `failed_start`-th start failed (1 for the first
    /// run), for task `seed` (its id): exponential, capped, then shortened
    /// by a jitter of up to 25 % drawn from (seed, failed_start). The draw
    /// is a hash rather than a random number so that the store's decision
    /// stays a pure function (the same inputs give the same delay, on every
    /// engine, in every test) while different tasks spread out.
    pub fn delay(&self, seed: i64, failed_start: u32) -> std::time::Duration {
        let doublings = failed_start.saturating_sub(1).min(62);
        let grown = self.delay_secs * f64::from(2u32).powi(doublings as i32);
        let capped = grown.min(self.max_delay_secs);
        let jitter = unit_interval(seed, failed_start) * 0.25;
        std::time::Duration::from_secs_f64((capped * (1.0 - jitter)).max(0.0))
    }

    /// Refuses delays that are not positive and finite, or a cap below the
    /// first delay.
    pub fn validate(&self) -> Result<()> {
        const MAX_SECS: f64 = 1.0e9;
        let ok = |s: f64| s.is_finite() && s > 0.0 && s <= MAX_SECS;
        if !ok(self.delay_secs) || !ok(self.max_delay_secs) {
            return Err(Error::InvalidArgument(format!(
                "retry delays must be positive numbers of seconds up to {MAX_SECS}, got {} and {}",
                self.delay_secs, self.max_delay_secs
            )));
        }
        if self.max_delay_secs < self.delay_secs {
            return Err(Error::InvalidArgument(format!(
                "the longest retry delay ({} s) is shorter than the first ({} s)",
                self.max_delay_secs, self.delay_secs
            )));
        }
        Ok(())
    }
}

/// A number in [0, 1) from a splitmix64 hash of (seed, n).
fn unit_interval(seed: i64, n: u32) -> f64 {
    let mut z = (seed as u64) ^ (u64::from(n) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
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
            retry: None,
            max_running: None,
            about: TypeAbout::default(),
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

    /// Retries failed tasks with this back-off (see [`RetryPolicy`]).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Limits how many of its tasks run at once (see [`TaskType::max_running`]).
    pub fn with_max_running(mut self, max_running: u32) -> Self {
        self.max_running = Some(max_running);
        self
    }

    /// Sets what it tells its users (see [`TypeAbout`]).
    pub fn with_about(mut self, about: TypeAbout) -> Self {
        self.about = about;
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
        if let Some(retry) = &self.retry {
            retry.validate()?;
        }
        if let Some(n) = self.max_running
            && (n < 1 || n > i32::MAX as u32)
        {
            return Err(Error::InvalidArgument(format!(
                "max running must be at least 1, got {n}"
            )));
        }
        if self.max_starts < 1 || self.max_starts > i32::MAX as u32 {
            return Err(Error::InvalidArgument(format!(
                "max starts must be at least 1, got {}",
                self.max_starts
            )));
        }
        self.about.validate()
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

#[cfg(test)]
mod retry_tests {
    use super::*;
    use std::time::Duration;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            delay_secs: 10.0,
            max_delay_secs: 60.0,
        }
    }

    /// Exponential from the first delay, capped, each within the 25 %
    /// jitter below the undisturbed value.
    #[test]
    fn delays_double_up_to_the_cap_with_jitter_below() {
        let p = policy();
        for seed in 0..200 {
            for (start, full) in [(1, 10.0), (2, 20.0), (3, 40.0), (4, 60.0), (9, 60.0)] {
                let d = p.delay(seed, start).as_secs_f64();
                assert!(d <= full && d >= full * 0.75, "{seed}/{start}: {d}");
            }
        }
        assert_eq!(p.delay(1, 3), p.delay(1, 3), "a pure function");
        let spread: std::collections::HashSet<Duration> = (0..50).map(|s| p.delay(s, 1)).collect();
        assert!(spread.len() > 40, "tasks spread out: {}", spread.len());
        assert!(p.delay(7, u32::MAX).as_secs_f64() <= 60.0);
    }

    #[test]
    fn bad_policies_are_refused() {
        let t = |delay_secs, max_delay_secs| {
            TaskType::new(TypeName::new("t").unwrap(), Handler::new("h").unwrap())
                .with_retry(RetryPolicy {
                    delay_secs,
                    max_delay_secs,
                })
                .validate()
        };
        assert!(t(10.0, 3600.0).is_ok());
        for (d, m) in [
            (0.0, 1.0),
            (-1.0, 1.0),
            (10.0, 5.0),
            (f64::NAN, 1.0),
            (1.0, f64::INFINITY),
        ] {
            assert!(t(d, m).is_err(), "{d} {m}");
        }
    }
}
