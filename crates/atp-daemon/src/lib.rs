//! The ATP daemon: pulls tasks from the shared queue and runs them, many at
//! once, on one host or many.
//!
//! - [`handler`]: the [`TaskHandler`] trait and the [`Registry`] of what a
//!   daemon can run (`builtin:*`, `exec:*`, names a program registers).
//! - [`context`]: the [`TaskContext`] a handler gets.
//! - [`builtin`]: `builtin:sum` (the original demo), `sleep`, `echo`,
//!   `fail`, `noop`.
//! - [`exec`]: `exec:PROGRAM ARG…`, an external program in any language.
//! - [`daemon`]: the claim loop, heartbeats, rescue and clean-up, shutdown.
//! - [`observer`]: the [`Observer`] hook a program gives a daemon to keep
//!   metrics of its attempts.
//!
//! Embedding it takes a few lines:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use atp_daemon::{Daemon, DaemonConfig, Registry, TaskContext, HandlerResult};
//!
//! async fn resize(ctx: TaskContext) -> HandlerResult {
//!     ctx.progress(Some(50.0), "halfway").await?;
//!     Ok(())
//! }
//!
//! let store = atp_store::open("sqlite://atp.sqlite", Default::default()).await?;
//! let mut registry = Registry::with_builtins();
//! registry.register("app:resize", resize);
//! let daemon = Daemon::new(store, registry, DaemonConfig::default());
//! daemon.run(atp_daemon::shutdown_on_signals()).await?;
//! # Ok(()) }
//! ```

pub mod bench;
pub mod builtin;
pub mod context;
pub mod daemon;
pub mod exec;
pub mod handler;
pub mod observer;

pub use context::TaskContext;
pub use daemon::{
    Daemon, DaemonConfig, DaemonError, SettledCounter, Shutdown, cleanup_once, shutdown_on_signals,
};
pub use handler::{HandlerError, HandlerResult, Registry, TaskHandler};
pub use observer::Observer;
