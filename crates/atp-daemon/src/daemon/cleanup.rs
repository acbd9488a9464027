//! The clean-up: abandoned tasks back to the queue (or FAILED at their last
//! start), retired tasks deleted, dead daemons' tasks rescued. Safe in
//! every daemon at once: the store's operations are compare-and-set.

use atp_core::{DeadRule, Store};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Shared;

/// Runs [`cleanup_once`] every `cleanup_interval` (with jitter, so daemons
/// started together spread out) until `stop`.
pub(super) async fn cleanup_loop<S: Store>(s: Arc<Shared<S>>, stop: CancellationToken) {
    loop {
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        let wait = s.config.cleanup_interval.mul_f64(jitter);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        cleanup_once(
            &s.store,
            s.config.dead_rule().sparing(s.id),
            s.config.retire_batch,
        )
        .await;
    }
}

/// What one clean-up did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Abandoned tasks re-enqueued or failed.
    pub abandoned: usize,
    /// Retired tasks deleted.
    pub retired: usize,
    /// Dead daemons removed.
    pub dead_daemons: usize,
    /// Tasks rescued from dead daemons.
    pub rescued: usize,
}

/// Runs every clean-up once: abandoned tasks, retired tasks (in batches of
/// `retire_batch` until none is left), dead daemons (by `dead`, as
/// [`reap_once`](super::reap::reap_once)). Errors are logged; what succeeded is reported. The
/// clean-up loop's one pass, and `atp cleanup`'s whole job.
pub async fn cleanup_once<S: Store>(store: &S, dead: DeadRule, retire_batch: u32) -> CleanupReport {
    let mut report = CleanupReport::default();
    match store.task_requeue_abandoned().await {
        Ok(rescued) => {
            for r in &rescued {
                info!(task = %r.id, outcome = %r.outcome, "abandoned task rescued");
            }
            report.abandoned = rescued.len();
        }
        Err(e) => warn!(error = %e, "re-enqueueing abandoned tasks failed"),
    }
    loop {
        match store.task_delete_retired(retire_batch).await {
            Ok(retired) => {
                report.retired += retired.len();
                if retired.len() < retire_batch as usize {
                    break;
                }
            }
            Err(e) => {
                warn!(error = %e, "deleting retired tasks failed");
                break;
            }
        }
    }
    if let Some((dead_daemons, rescued)) = super::reap::reap_once(store, dead).await {
        report.dead_daemons = dead_daemons;
        report.rescued = rescued;
    }
    if report != CleanupReport::default() {
        info!(?report, "clean-up");
    }
    report
}
