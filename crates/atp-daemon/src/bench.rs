//! End-to-end measurements of a daemon, shared by the benchmark target and
//! `atp bench`: throughput with no-op tasks (optionally behind a backlog),
//! pick-up latency, enqueues one at a time by concurrent producers, and a
//! steady-state run at a fixed rate in and out.
//!
//! Each runs in this process on the given store, under task types of its
//! own (`atp-bench-…`), and deletes what it made afterwards, so they can
//! run against a database in use.
//!
//! # Layout
//! - [`drain`]: a filled queue drained by one daemon ([`throughput`]).
//! - [`pickup`]: an idle daemon woken by one task at a time ([`pickup_latency`]).
//! - [`enqueue`]: `task_enqueue` from concurrent producers ([`enqueue_single`]).
//! - [`steady`]: producers at a fixed rate and one daemon for a while ([`steady_state`]).

mod drain;
mod enqueue;
mod pickup;
mod steady;

use std::time::{Duration, Instant};

use atp_core::{Handler, Store, TaskIdentifier, TaskType, TypeName};

pub use drain::{DrainParams, Throughput, drain, throughput};
pub use enqueue::{SingleEnqueue, enqueue_single};
pub use pickup::pickup_latency;
pub use steady::{Interval, Sampler, Steady, SteadyParams, steady_state};

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    /// Samples taken.
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// The percentiles of `samples` (milliseconds, any order), or `None`
    /// when there are none.
    pub fn of(mut samples: Vec<f64>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        // Nearest rank, as the peers' harness computes them.
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some(Latency {
            samples: samples.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }
}

/// Why a measurement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A store call failed.
    #[error(transparent)]
    Store(#[from] atp_core::Error),
    /// The daemon failed.
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// The run did not finish in time.
    #[error("{0}")]
    Stalled(String),
}

fn name(text: &str) -> TypeName {
    TypeName::new(text).expect("a valid literal type name")
}

fn identifier(text: &str) -> TaskIdentifier {
    TaskIdentifier::new(text).expect("a valid generated identifier")
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Registers `type_name` afresh (deleting leftovers of an interrupted run
/// with their tasks) with `handler` and `retention_secs`.
async fn fresh_type<S: Store>(
    store: &S,
    type_name: &TypeName,
    handler: &str,
    retention_secs: f64,
) -> Result<(), BenchError> {
    match store.task_type_delete(type_name, true).await {
        Ok(_) | Err(atp_core::Error::TypeNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let mut t = TaskType::new(type_name.clone(), Handler::new(handler).expect("valid"));
    t.timeout_secs = 600.0;
    t.retention_secs = retention_secs;
    store.task_type_upsert(&t).await?;
    Ok(())
}

/// Calls `progress` with `count()` every 10 ms until `done` resolves, and
/// once more after.
async fn report_while<T>(
    done: impl Future<Output = T>,
    count: impl Fn() -> usize,
    mut progress: impl FnMut(usize),
) -> T {
    let mut done = std::pin::pin!(done);
    loop {
        progress(count());
        tokio::select! {
            out = &mut done => {
                progress(count());
                return out;
            }
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

/// The time since `start`, in seconds.
fn secs_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Awaits every producer, in order; a producer that panicked is reported
/// as stalled.
async fn join_all<T>(
    handles: Vec<tokio::task::JoinHandle<Result<T, BenchError>>>,
) -> Vec<Result<T, BenchError>> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(
            handle
                .await
                .unwrap_or_else(|e| Err(BenchError::Stalled(format!("a producer failed: {e}")))),
        );
    }
    out
}
