//! The ATP daemon: pulls tasks from the shared queue and runs them, many at
//! once, on one host or many.
//!
//! # Layout
//! - [`handler`]: the [`TaskHandler`] trait and the [`Registry`] of what a
//!   daemon can run (`builtin:*`, `exec:*`, names a program registers).
//! - [`error`]: [`HandlerError`], how a handler says it failed.
//! - [`context`]: the [`TaskContext`] a handler gets.
//! - [`builtin`]: `builtin:sum` (the original demo), `sleep`, `echo`,
//!   `fail`, `noop`.
//! - [`exec`]: `exec:PROGRAM ARG…`, an external program in any language.
//! - [`daemon`]: the claim loop, heartbeats, hearing cancels, rescue and
//!   clean-up, shutdown, one file each. A task an operator cancels stops its
//!   attempt at once: `ctx.cancelled()` fires (and
//!   [`TaskContext::cancelled_by_operator`] says why), an `exec:` program
//!   gets SIGTERM and then SIGKILL after [`DaemonConfig::cancel_grace`].
//! - [`Observer`] (defined in `atp-core`, re-exported here): the hook a
//!   program gives a daemon to keep metrics of its attempts.
//!
//! # Embedding
//!
//! A type, a handler registered under the type's handler name, and a
//! daemon: it claims every type whose handler its registry can run
//! ([`DaemonConfig::types`] only narrows that).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use atp_core::{Handler, Store, TaskType, TypeName};
//! use atp_daemon::{Daemon, DaemonConfig, Registry, TaskContext, HandlerResult};
//!
//! async fn resize(ctx: TaskContext) -> HandlerResult {
//!     ctx.progress(Some(50.0), "halfway").await?;
//!     Ok(())
//! }
//!
//! // The daemon's warnings (a lost task, an unreachable database) go
//! // through `tracing`: without a subscriber they vanish. Two lines (with
//! // the `tracing-subscriber` crate) print them on stderr:
//! let filter = tracing_subscriber::EnvFilter::new("info");
//! tracing_subscriber::fmt().with_env_filter(filter).init();
//!
//! let store = atp_store::open("sqlite://atp.sqlite", Default::default()).await?;
//! store
//!     .task_type_upsert(&TaskType::new(TypeName::new("resize")?, Handler::new("app:resize")?))
//!     .await?;
//! let mut registry = Registry::with_builtins();
//! registry.register("app:resize", resize);
//! let daemon = Daemon::new(store, registry, DaemonConfig::default());
//! daemon.run(atp_daemon::shutdown_on_signals()).await?;
//! # Ok(()) }
//! ```
//!
//! # Logs
//!
//! The daemon reports through [`tracing`] (spans `daemon` and `attempt`,
//! warnings an operator should act on). A program that installs no
//! subscriber sees none of it; `tracing_subscriber::fmt().init()` is the
//! shortest way to see it, as in the example above.

pub mod bench;
pub mod builtin;
pub mod context;
pub mod daemon;
pub mod error;
pub mod exec;
pub mod handler;

pub use atp_core::observer::{self, AttemptSettled, Observer};
pub use context::TaskContext;
pub use daemon::{
    CleanupReport, Daemon, DaemonConfig, DaemonError, ScheduleReport, SettledCounter, Shutdown,
    cleanup_once, schedule_once, shutdown_on_signals,
};
pub use error::{HandlerError, HandlerResult};
pub use handler::{Registry, TaskHandler};
