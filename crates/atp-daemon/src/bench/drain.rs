//! A filled queue drained by one daemon: the batch enqueue rate and the
//! end-to-end rate of no-op tasks, optionally behind a backlog.

use std::time::{Duration, Instant};

use atp_core::{NewTask, Store, TaskType, TypeName};

use super::{BenchError, fresh_type, identifier, name, secs_since};
use crate::daemon::{Daemon, DaemonConfig, Shutdown};
use crate::handler::Registry;

/// Tasks per `task_enqueue_many` call: the figure BENCHMARKS.md quotes.
const BATCH: usize = 1_000;

/// What [`drain`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainParams {
    /// Tasks timed: enqueued in batches, then drained.
    pub tasks: usize,
    /// Tasks queued before the timed ones and never timed: the timed drain
    /// runs with between `backlog + tasks` and `backlog` tasks queued. What
    /// is left of them is deleted afterwards.
    pub backlog: usize,
    /// The daemon's concurrency.
    pub concurrency: usize,
}

/// What [`drain`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Tasks run (timed).
    pub tasks: usize,
    /// Tasks queued besides them, untimed.
    pub backlog: usize,
    /// Tasks of the benchmark's type the store counted as queued when the
    /// daemon started (`backlog + tasks`, read back rather than assumed).
    pub queued_at_start: u64,
    /// Tasks enqueued per second (batches of 1,000), on top of the backlog.
    pub enqueue_per_sec: f64,
    /// Tasks claimed, started, run and finished per second, from the
    /// daemon's start to the `tasks`-th FINISHED.
    pub run_per_sec: f64,
}

/// Enqueues `tasks` no-op tasks, then lets one daemon with `concurrency`
/// slots drain them. `progress` is called with the number finished so far.
pub async fn throughput<S: Store + Clone>(
    store: &S,
    tasks: usize,
    concurrency: usize,
    progress: impl FnMut(usize),
) -> Result<Throughput, BenchError> {
    let params = DrainParams {
        tasks,
        backlog: 0,
        concurrency,
    };
    drain(store, params, progress).await
}

/// Enqueues `params.backlog` no-op tasks (untimed), then `params.tasks`
/// (timed), then times one daemon with `params.concurrency` slots until it
/// has finished `params.tasks` of them, and deletes what is left.
/// `progress` is called with the number finished so far.
pub async fn drain<S: Store + Clone>(
    store: &S,
    params: DrainParams,
    mut progress: impl FnMut(usize),
) -> Result<Throughput, BenchError> {
    let DrainParams {
        tasks,
        backlog,
        concurrency,
    } = params;
    let t = name("atp-bench-noop");
    fresh_type(store, &t, "builtin:noop", TaskType::DEFAULT_RETENTION_SECS).await?;
    enqueue_batches(store, &t, "b", backlog).await?;
    let started = Instant::now();
    enqueue_batches(store, &t, "n", tasks).await?;
    let enqueue_per_sec = tasks as f64 / secs_since(started);
    let queued_at_start = store
        .task_counts()
        .await?
        .by_type
        .iter()
        .filter(|(of, _, _)| *of == t)
        .map(|(_, _, n)| n)
        .sum();

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
        progress((done as usize).min(tasks));
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
    let run_per_sec = tasks as f64 / secs_since(started);
    shutdown.stop();
    run.await
        .map_err(|e| BenchError::Stalled(format!("the daemon task failed: {e}")))??;
    store.task_type_delete(&t, true).await?;
    Ok(Throughput {
        tasks,
        backlog,
        queued_at_start,
        enqueue_per_sec,
        run_per_sec,
    })
}

/// Enqueues `count` tasks of `t` named `{prefix}{i}`, 1,000 per call.
async fn enqueue_batches<S: Store>(
    store: &S,
    t: &TypeName,
    prefix: &str,
    count: usize,
) -> Result<(), BenchError> {
    for chunk in 0..count.div_ceil(BATCH) {
        let batch = (chunk * BATCH..count.min((chunk + 1) * BATCH))
            .map(|i| NewTask::new(t.clone(), identifier(&format!("{prefix}{i}"))))
            .collect();
        store.task_enqueue_many(batch).await?;
    }
    Ok(())
}
