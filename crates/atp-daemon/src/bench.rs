//! End-to-end measurements of a daemon, shared by the benchmark target and
//! `atp bench`: throughput with no-op tasks and pick-up latency.
//!
//! Both run a [`Daemon`] in this process on the given store, under task
//! types of their own (`atp-bench-…`), and delete what they made
//! afterwards, so they can run against a database in use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use atp_core::{Handler, NewTask, Store, TaskIdentifier, TaskType, TypeName};
use tokio::sync::mpsc;

use crate::daemon::{Daemon, DaemonConfig, Shutdown};
use crate::handler::{HandlerError, Registry};
use crate::{HandlerResult, TaskContext};

/// What [`throughput`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Tasks run.
    pub tasks: usize,
    /// Tasks enqueued per second (batches of 1,000).
    pub enqueue_per_sec: f64,
    /// Tasks claimed, started, run and finished per second, from the
    /// daemon's start to the last task's FINISHED.
    pub run_per_sec: f64,
}

/// What [`pickup_latency`] measured, in milliseconds.
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

async fn fresh_type<S: Store>(
    store: &S,
    type_name: &TypeName,
    handler: &str,
) -> Result<(), BenchError> {
    // Leftovers of an interrupted run.
    match store.task_type_delete(type_name, true).await {
        Ok(_) | Err(atp_core::Error::TypeNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let mut t = TaskType::new(type_name.clone(), Handler::new(handler).expect("valid"));
    t.timeout_secs = 600.0;
    store.task_type_upsert(&t).await?;
    Ok(())
}

/// Enqueues `tasks` no-op tasks, then lets one daemon with `concurrency`
/// slots drain them. `progress` is called with the number finished so far.
pub async fn throughput<S: Store + Clone>(
    store: &S,
    tasks: usize,
    concurrency: usize,
    mut progress: impl FnMut(usize),
) -> Result<Throughput, BenchError> {
    let t = name("atp-bench-noop");
    fresh_type(store, &t, "builtin:noop").await?;
    let started = Instant::now();
    for chunk in 0..tasks.div_ceil(1_000) {
        let batch = (chunk * 1_000..tasks.min((chunk + 1) * 1_000))
            .map(|i| NewTask::new(t.clone(), identifier(&format!("n{i}"))))
            .collect();
        store.task_enqueue_many(batch).await?;
    }
    let enqueue_per_sec = tasks as f64 / started.elapsed().as_secs_f64();

    let config = DaemonConfig {
        concurrency,
        types: Some(vec![t.clone()]),
        ..DaemonConfig::default()
    };
    let daemon = Daemon::new(store.clone(), Registry::with_builtins(), config);
    let counter = daemon.settled_counter();
    let shutdown = Shutdown::new();
    let started = Instant::now();
    let run = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { daemon.run(shutdown).await })
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = counter.get();
        progress(done as usize);
        if done as usize >= tasks {
            break;
        }
        if Instant::now() > deadline || run.is_finished() {
            shutdown.abort();
            return Err(BenchError::Stalled(format!(
                "only {done} of {tasks} tasks finished"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run_per_sec = tasks as f64 / started.elapsed().as_secs_f64();
    shutdown.stop();
    run.await
        .map_err(|e| BenchError::Stalled(format!("the daemon task failed: {e}")))??;
    store.task_type_delete(&t, true).await?;
    Ok(Throughput {
        tasks,
        enqueue_per_sec,
        run_per_sec,
    })
}

/// With an idle daemon running, enqueues `samples` tasks one at a time and
/// measures from the enqueue's return to the handler's first instruction.
pub async fn pickup_latency<S: Store + Clone>(
    store: &S,
    samples: usize,
    config: DaemonConfig,
    mut progress: impl FnMut(usize),
) -> Result<Latency, BenchError> {
    let t = name("atp-bench-probe");
    fresh_type(store, &t, "atp:bench-probe").await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let mut registry = Registry::empty();
    registry.register("atp:bench-probe", move |_ctx: TaskContext| {
        let now = Instant::now();
        let tx = tx.clone();
        async move {
            tx.send(now)
                .map_err(|_| HandlerError::new("the benchmark stopped listening"))?;
            HandlerResult::Ok(())
        }
    });
    let config = DaemonConfig {
        types: Some(vec![t.clone()]),
        ..config
    };
    let poll = config.poll_interval;
    let daemon = Arc::new(Daemon::new(store.clone(), registry, config));
    let shutdown = Shutdown::new();
    let run = {
        let (daemon, shutdown) = (daemon.clone(), shutdown.clone());
        tokio::spawn(async move { daemon.run(shutdown).await })
    };
    // Let the daemon register and go idle.
    tokio::time::sleep(poll * 2 + Duration::from_millis(200)).await;
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        store
            .task_enqueue(NewTask::new(t.clone(), identifier(&format!("p{i}"))))
            .await?;
        let enqueued = Instant::now();
        let ran = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .ok()
            .flatten()
            .ok_or_else(|| BenchError::Stalled(format!("probe {i} was not picked up")))?;
        latencies.push(ran.saturating_duration_since(enqueued).as_secs_f64() * 1e3);
        progress(i + 1);
        // Idle again before the next probe, so each one measures a wake-up.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.stop();
    run.await
        .map_err(|e| BenchError::Stalled(format!("the daemon task failed: {e}")))??;
    store.task_type_delete(&t, true).await?;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(Latency {
        samples,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    })
}
