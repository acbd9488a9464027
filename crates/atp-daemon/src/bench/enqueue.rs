//! Enqueues one at a time (`task_enqueue`) from concurrent producers: what
//! a site with many web servers producing into one queue gets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use atp_core::{NewTask, Store, TaskType};

use super::{
    BenchError, Latency, fresh_type, identifier, join_all, millis, name, report_while, secs_since,
};

/// What [`enqueue_single`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SingleEnqueue {
    /// Tasks enqueued, by all producers together.
    pub tasks: usize,
    /// Producers enqueueing at once.
    pub producers: usize,
    /// Tasks enqueued per second, all producers together.
    pub per_sec: f64,
    /// How long each `task_enqueue` call took.
    pub call: Latency,
}

/// `producers` concurrent producers enqueue `tasks` no-op tasks between
/// them, each one call at a time; nothing runs them, and they are deleted
/// afterwards. `progress` is called with the number enqueued so far.
pub async fn enqueue_single<S: Store + Clone>(
    store: &S,
    tasks: usize,
    producers: usize,
    progress: impl FnMut(usize),
) -> Result<SingleEnqueue, BenchError> {
    let t = name("atp-bench-single");
    fresh_type(store, &t, "builtin:noop", TaskType::DEFAULT_RETENTION_SECS).await?;
    // Tickets rather than fixed shares: a producer that is served faster
    // takes more, as it would in production.
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..producers)
        .map(|_| {
            let (store, t, next, done) = (store.clone(), t.clone(), next.clone(), done.clone());
            tokio::spawn(async move {
                let mut calls = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= tasks {
                        return Ok::<_, BenchError>(calls);
                    }
                    let call = Instant::now();
                    store
                        .task_enqueue(NewTask::new(t.clone(), identifier(&format!("e{i}"))))
                        .await?;
                    calls.push(millis(call.elapsed()));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let joined = report_while(join_all(handles), || done.load(Ordering::Relaxed), progress).await;
    let per_sec = tasks as f64 / secs_since(started);
    let mut calls = Vec::with_capacity(tasks);
    for producer in joined {
        calls.extend(producer?);
    }
    store.task_type_delete(&t, true).await?;
    let call = Latency::of(calls).ok_or_else(|| BenchError::Stalled("no enqueue made".into()))?;
    Ok(SingleEnqueue {
        tasks,
        producers,
        per_sec,
        call,
    })
}
