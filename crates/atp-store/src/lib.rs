//! ATP's storage engines behind [`atp_core::Store`].
//!
//! - [`sqlite`]: one file in WAL mode, the zero-set-up default; or memory.
//! - [`postgres`]: a connection URL, for daemons on many hosts.
//!
//! [`open`] picks the engine from the URL (`sqlite://PATH`, `sqlite::memory:`,
//! `postgres://…`) and applies the embedded migrations.
//!
//! # Layout
//! Both engines mirror each other file for file: `task_type.rs`, `task.rs`
//! (enqueue, look-ups, delete), `queue.rs` (claim, start, status changes
//! from holders), `reap.rs` (clean-ups, daemon records), `migrate.rs`,
//! `cancel.rs` (an operator's cancel), `wake.rs` (what wakes
//! `Store::wait_for_tasks`, and what tells `Store::task_cancelled_watch`;
//! both feed `cancel_hub.rs`'s broadcast), `schedule.rs` (schedules, and
//! the one transaction that enqueues an occurrence exactly once: see
//! `atp_core::schedule`). They only fetch and
//! write: what a change, a release or a rescue makes of a task is decided
//! once, in `atp_core::decide`; `input_check.rs` checks inputs against
//! their types' input schemas (and how an insert proves the schema it was
//! checked against is still the type's); `shared.rs` holds the checks and shaping at
//! the store's boundary (sizes, NUL characters, pages), `row.rs` maps the
//! columns of a task to a `Task` once for both (`schedule.rs` those of a
//! schedule).
//! `conformance/` (feature `conformance`) holds the contract suite both run;
//! `testing` gives each test a fresh database.
//!
//! # Example
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use atp_core::{Handler, NewTask, Store, TaskIdentifier, TaskType, TypeName};
//!
//! let store = atp_store::open("sqlite::memory:", Default::default()).await?;
//! let sum = TypeName::new("sum")?;
//! store.task_type_upsert(&TaskType::new(sum.clone(), Handler::new("builtin:sum")?)).await?;
//! let task = store
//!     .task_enqueue(NewTask::new(sum, TaskIdentifier::new("job-1")?).with_input(serde_json::json!([1, 2])))
//!     .await?;
//! assert_eq!(task.status, atp_core::Status::Accepted);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod any;
mod cancel_hub;
mod input_check;
mod migrations;
pub mod postgres;
mod row;
mod schedule;
mod shared;
pub mod sqlite;
mod url;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

pub use any::AnyStore;
pub use url::{DatabaseUrl, open};
