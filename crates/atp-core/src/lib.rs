//! ATP's domain model, with no I/O.
//!
//! ATP (Asynchronous Task Processing) runs long background tasks that must
//! never be lost. This crate holds what every layer agrees on: validated
//! names, task types, tasks, the status state machine, payload encoding and
//! the [`Store`](store::Store) trait that storage engines implement.
//!
//! # Layout
//! - [`status`]: `Status` and the table of legal transitions.
//! - [`decide`]: the store's decisions (what a change, a release, a rescue
//!   or an enqueue makes of a task), pure, shared by every engine.
//! - [`id`]: validated names (`TypeName`, `TaskIdentifier`, `Handler`) and ids.
//! - [`task_type`]: `TaskType` and its limits.
//! - [`task`]: `Task`, its log, attempts (fencing tokens) and list filters.
//! - [`payload`]: responses and the "compress unless text" rule.
//! - [`store`]: the `Store` trait and its parameters.
//! - [`schedule`]: periodic tasks (cron expressions in time zones) and
//!   which occurrences a tick enqueues.
//! - [`daemon`]: daemon records (liveness).
//! - [`clock`]: where a store takes "now" from, and a clock tests move.
//! - [`messages`]: log lines the stores write themselves.
//! - [`limits`]: the size and range limits every layer agrees on.
//! - [`observer`]: the `Observer` a daemon tells about its attempts.
//! - [`cancel`]: how a daemon hears that a task it holds was cancelled.
//! - [`error`]: the `Error` enum every store returns.
//!
//! # Example
//! ```
//! use atp_core::status::{Status, Transition};
//!
//! assert_eq!(Transition::Claim.check(Status::Accepted), Ok(Status::Scheduled));
//! assert!(Transition::Start.check(Status::Finished).is_err());
//! assert_eq!("running".parse::<Status>(), Ok(Status::Running));
//! ```

pub mod about;
pub mod cancel;
pub mod clock;
pub mod daemon;
pub mod decide;
pub mod error;
pub mod id;
pub mod limits;
pub mod messages;
pub mod observer;
pub mod payload;
pub mod schedule;
pub mod status;
pub mod store;
pub mod task;
pub mod task_type;
pub mod time;

pub use about::{InputSchema, TypeAbout, Violation};
pub use cancel::{CancelFeed, CancelNotice, CancelWatch};
pub use clock::{Clock, TestClock};
pub use daemon::{DaemonInfo, DeadRule, ReapedDaemon};
pub use error::{Error, Result};
pub use id::{DaemonId, Handler, TaskId, TaskIdentifier, TypeName};
pub use observer::{AttemptSettled, Observer};
pub use payload::Response;
pub use schedule::{
    CatchUp, NewSchedule, Recurrence, Schedule, ScheduleFired, ScheduleName, ScheduleOccurrence,
};
pub use status::{Status, Transition};
pub use store::{ClaimParams, Store, StoreExt, StoreOptions};
pub use task::{
    Attempt, BulkReenqueue, ChangeKind, ClaimedTask, Due, LogRecord, NewTask, Progress, Queued,
    Rescued, Retired, Retry, StartedTask, StatusChange, Task, TaskCounts, TaskCursor, TaskFilter,
    TaskMessagePage, TaskPage, TaskRef, TaskWithMessage,
};
pub use task_type::{RetryPolicy, TaskType};
