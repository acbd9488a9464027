//! Pick-up latency: an idle daemon woken by one task at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use atp_core::{NewTask, Store, TaskType};
use tokio::sync::mpsc;

use super::{BenchError, Latency, fresh_type, identifier, millis, name};
use crate::daemon::{Daemon, DaemonConfig, Shutdown};
use crate::handler::{HandlerError, Registry};
use crate::{HandlerResult, TaskContext};

/// With an idle daemon running, enqueues `samples` tasks one at a time and
/// measures from the enqueue's return to the handler's first instruction.
pub async fn pickup_latency<S: Store + Clone>(
    store: &S,
    samples: usize,
    config: DaemonConfig,
    mut progress: impl FnMut(usize),
) -> Result<Latency, BenchError> {
    let t = name("atp-bench-probe");
    fresh_type(
        store,
        &t,
        "atp:bench-probe",
        TaskType::DEFAULT_RETENTION_SECS,
    )
    .await?;
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
    let daemon = Arc::new(Daemon::new(store.clone(), registry, config));
    let shutdown = Shutdown::new();
    let run = {
        let (daemon, shutdown) = (daemon.clone(), shutdown.clone());
        tokio::spawn(async move { daemon.run(shutdown).await })
    };
    // A first probe, not measured: once it ran, the daemon is registered,
    // listening and claiming (its connections open); it is idle again by
    // the next probe, as between any two.
    store
        .task_enqueue(NewTask::new(t.clone(), identifier("warm-up")))
        .await?;
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| BenchError::Stalled("the warm-up probe was not picked up".into()))?;
    tokio::time::sleep(Duration::from_millis(5)).await;
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
        latencies.push(millis(ran.saturating_duration_since(enqueued)));
        progress(i + 1);
        // Idle again before the next probe, so each one measures a wake-up.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.stop();
    run.await
        .map_err(|e| BenchError::Stalled(format!("the daemon task failed: {e}")))??;
    store.task_type_delete(&t, true).await?;
    Latency::of(latencies).ok_or_else(|| BenchError::Stalled("no samples taken".into()))
}
