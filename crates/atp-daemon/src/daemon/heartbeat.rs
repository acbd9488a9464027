//! The heartbeat: keeps the daemon's record and every task it holds alive,
//! cancels attempts whose task was taken from them, and reconciles what
//! the database says this daemon holds with what it runs.
//!
//! [`Heartbeat::heartbeat_once`] is one round; [`heartbeat_loop`] runs one
//! every heartbeat interval.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use atp_core::{
    Attempt, DaemonInfo, Error as StoreError, Status, StatusChange, Store, TaskFilter, TaskId,
    TaskRef,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Shared;

/// The log message of a task handed back by reconciliation.
pub(super) const ORPHAN_MESSAGE: &str = "Held by its daemon but not running there (the reply to a claim or start was lost); re-enqueued";

/// Heartbeats the daemon and its attempts every heartbeat interval until
/// `stop`.
pub(super) async fn heartbeat_loop<S: Store>(
    s: Arc<Shared<S>>,
    info: DaemonInfo,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(s.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = Heartbeat::new(info);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        heartbeat.heartbeat_once(&s).await;
    }
}

/// What the heartbeat remembers from one round to the next.
pub(super) struct Heartbeat {
    /// The daemon's record, registered again if it was taken for dead.
    info: DaemonInfo,
    /// Tasks held here but run by no attempt in the last round, with their
    /// lease then (see [`reconcile`]).
    suspects: HashMap<TaskId, u64>,
}

impl Heartbeat {
    pub(super) fn new(info: DaemonInfo) -> Self {
        Heartbeat {
            info,
            suspects: HashMap::new(),
        }
    }

    /// One round: reconciliation, the daemon's own heartbeat, then one
    /// heartbeat for every task running or claimed ahead here.
    pub(super) async fn heartbeat_once<S: Store>(&mut self, s: &Shared<S>) {
        reconcile(s, &mut self.suspects).await;
        match daemon_heartbeat(s).await {
            Ok(true) => {}
            Ok(false) => {
                // Reaped as dead (a stall longer than `dead_after`): every
                // task we held has been rescued. Stop those attempts and
                // record ourselves again.
                warn!("this daemon was taken for dead; its attempts are cancelled");
                for r in s.running.lock().expect("running map").values() {
                    r.ctx.mark_lost();
                }
                if let Err(e) = s.store.daemon_register(&self.info).await {
                    warn!(error = %e, "could not record the daemon again");
                }
            }
            Err(e) => warn!(error = %e, "daemon heartbeat failed"),
        }
        heartbeat_holds(s).await;
    }
}

/// Tries of the daemon's own heartbeat in one round while the database is
/// unreachable, and the pause between them.
const HEARTBEAT_TRIES: u32 = 3;
const HEARTBEAT_RETRY: Duration = Duration::from_millis(50);

/// The daemon's own heartbeat, tried again at once after a lost
/// connection (a killed backend, a restart): a daemon that misses
/// heartbeats for `gone_after` while its liveness lock is being taken
/// again could be taken for dead (see `DaemonConfig::gone_after`).
async fn daemon_heartbeat<S: Store>(s: &Shared<S>) -> atp_core::Result<bool> {
    let mut tries = 1;
    loop {
        match s.store.daemon_heartbeat(s.id).await {
            Err(StoreError::Unavailable { .. }) if tries < HEARTBEAT_TRIES => {
                tries += 1;
                tokio::time::sleep(HEARTBEAT_RETRY).await;
            }
            other => return other,
        }
    }
}

/// Heartbeats every task running or claimed ahead here, in one call (also
/// when the cancellation watch may have missed notices).
pub(super) async fn heartbeat_holds<S: Store>(s: &Shared<S>) {
    let mut holds: Vec<Attempt> = s
        .running
        .lock()
        .expect("running map")
        .values()
        .map(|r| r.ctx.attempt())
        .collect();
    // Claimed ahead and waiting for a slot: keep them alive too.
    holds.extend(s.buffered.lock().expect("buffer").values().copied());
    if holds.is_empty() {
        return;
    }
    let results = match s.store.task_heartbeat_many(&holds).await {
        Ok(results) => results,
        Err(e) => {
            warn!(error = %e, "task heartbeat failed");
            return;
        }
    };
    for (attempt, r) in holds.iter().zip(results) {
        if let Err(StoreError::StaleAttempt { .. }) = r {
            refused(s, attempt).await;
        }
    }
}

/// A held task's heartbeat was refused. That says the attempt no longer
/// holds a *live* task, which has two causes: the task was taken from it
/// (rescued, re-enqueued or cancelled by an operator), or the attempt
/// itself ended it between the listing and the heartbeat (a handler's own
/// `finish` commits before the handler, or this daemon, hears the reply).
/// Only the first is a loss worth a warning and a cancellation; the store
/// tells them apart: a task ended under this very hold keeps its holder
/// and lease, a CANCELLED one was ended by an operator (and has no holder),
/// so it really left this attempt, which is stopped as a cancel
/// (SIGTERM and the grace for an `exec:` program).
async fn refused<S: Store>(s: &Shared<S>, attempt: &Attempt) {
    let ctx = {
        let running = s.running.lock().expect("running map");
        match running.get(&attempt.task) {
            // Still running and not ended by its handler (as far as the
            // attempt knows yet).
            Some(run) if !run.ctx.settled() && run.ctx.attempt() == *attempt => run.ctx.clone(),
            // The attempt ended between the listing and the heartbeat, or
            // the task is claimed ahead (its attempt learns its fate when
            // it runs): nothing to cancel.
            _ => {
                debug!(task = %attempt.task, "heartbeat raced the attempt's end");
                return;
            }
        }
    };
    match s.store.task_get(&TaskRef::Id(attempt.task)).await {
        Ok(task) if task.status == Status::Cancelled => {
            info!(task = %attempt.task, "the task was cancelled by an operator; stopping its attempt");
            ctx.mark_cancelled();
        }
        Ok(task)
            if task.status.is_terminal()
                && task.holder == Some(attempt.holder)
                && task.lease == attempt.lease =>
        {
            debug!(task = %attempt.task, status = ?task.status, "heartbeat raced the attempt's own end");
        }
        Ok(_) | Err(StoreError::TaskNotFound(_)) => {
            warn!(task = %attempt.task, "attempt lost its task; cancelling it");
            ctx.mark_lost();
        }
        Err(e) => {
            // Not known to be lost: the next round asks again.
            debug!(task = %attempt.task, error = %e, "could not check a refused heartbeat");
        }
    }
}

/// Hands back tasks the database says this daemon holds but that no
/// attempt of it runs: the reply to a claim or a start was lost (the
/// connection dropped after the commit). Without this they would wait for
/// their type's timeout. A task is handed back only when two consecutive
/// rounds (a heartbeat interval apart) find it so with the same lease, which
/// leaves time for a claim in flight to become an attempt.
async fn reconcile<S: Store>(s: &Shared<S>, suspects: &mut HashMap<TaskId, u64>) {
    let filter = TaskFilter {
        holder: Some(s.id),
        limit: TaskFilter::MAX_LIMIT,
        ..TaskFilter::default()
    };
    let held = match s.store.task_list(&filter).await {
        Ok(page) => page.tasks,
        Err(e) => {
            debug!(error = %e, "listing held tasks failed");
            return;
        }
    };
    let known: HashSet<TaskId> = {
        let running = s.running.lock().expect("running map");
        let settling = s.settling.lock().expect("settling set");
        let buffered = s.buffered.lock().expect("buffer");
        running
            .keys()
            .chain(settling.iter())
            .chain(buffered.keys())
            .copied()
            .collect()
    };
    let mut orphans = Vec::new();
    let mut next = HashMap::new();
    for task in held.into_iter().filter(|t| !known.contains(&t.id)) {
        if suspects.get(&task.id) == Some(&task.lease) {
            orphans.push(Attempt {
                task: task.id,
                holder: s.id,
                lease: task.lease,
            });
        } else {
            next.insert(task.id, task.lease);
        }
    }
    *suspects = next;
    if !orphans.is_empty() {
        warn!(
            count = orphans.len(),
            "tasks held but not running here; handing them back"
        );
        hand_back(s, &orphans, ORPHAN_MESSAGE).await;
    }
}

/// Puts held tasks back in the queue at once.
async fn hand_back<S: Store>(s: &Shared<S>, holds: &[Attempt], reason: &str) {
    let changes: Vec<StatusChange> = holds
        .iter()
        .map(|a| StatusChange::hand_back(*a, reason))
        .collect();
    match s.store.task_set_status_many(&changes).await {
        Ok(results) => {
            for (a, r) in holds.iter().zip(results) {
                if let Err(e) = r {
                    warn!(task = %a.task, error = %e, "could not hand a task back");
                }
            }
        }
        Err(e) => warn!(error = %e, "could not hand tasks back; they will be rescued"),
    }
}
