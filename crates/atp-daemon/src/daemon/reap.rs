//! The reaper: finds dead daemons and rescues their tasks, every heartbeat
//! interval, so a killed daemon's tasks are back in the queue within a few
//! seconds (`DaemonConfig::gone_after` plus one interval) rather than at
//! the next clean-up.
//!
//! Every daemon reaps (the store's reap is safe to run everywhere at once:
//! each record is removed, and each task rescued, once). The cost is one
//! statement that finds nothing on a healthy system.

use std::sync::Arc;

use atp_core::{DeadRule, Store};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Shared;

/// Runs [`reap_once`] every heartbeat interval (with jitter, so daemons
/// started together spread out) until `stop`.
pub(super) async fn reap_loop<S: Store>(s: Arc<Shared<S>>, stop: CancellationToken) {
    let rule = s.config.dead_rule().sparing(s.id);
    loop {
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        let wait = s.config.heartbeat_interval.mul_f64(jitter);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        reap_once(&s.store, rule).await;
    }
}

/// One reap: removes the daemons `rule` takes for dead and rescues their
/// tasks, logging each. The counts of daemons reaped and tasks rescued, or
/// `None` when the store failed (logged).
pub(super) async fn reap_once<S: Store>(store: &S, rule: DeadRule) -> Option<(usize, usize)> {
    match store.daemon_reap_dead(rule).await {
        Ok(reaped) => {
            let mut rescued = 0;
            for d in &reaped {
                warn!(daemon = %d.id, rescued = d.rescued.len(), "dead daemon reaped");
                rescued += d.rescued.len();
            }
            Some((reaped.len(), rescued))
        }
        Err(e) => {
            warn!(error = %e, "reaping dead daemons failed");
            None
        }
    }
}
