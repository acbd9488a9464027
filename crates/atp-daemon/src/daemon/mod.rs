//! The daemon: claims tasks it can run, runs up to `concurrency` at once,
//! heartbeats, rescues the work of dead daemons, cleans up, and shuts down
//! without losing a task.
//!
//! One [`Daemon`] runs five jobs, each in a file of its own; every
//! background loop is a one-pass function plus timing, and tests call the
//! one pass directly:
//! - `claim`: claims as many of the oldest ACCEPTED tasks as it has free
//!   slots (only types whose handler it can run), starts them and spawns
//!   one attempt each (`claim_once`); when the queue is empty it waits for
//!   the poll interval or an in-process wake-up ([`Daemon::waker`]).
//! - `heartbeat`: refreshes the daemon's record and every held task's
//!   update time, and hands back tasks held here but run by no attempt
//!   (`heartbeat_once`); an attempt whose heartbeat is refused because the
//!   task was rescued meanwhile is cancelled and its late result dropped.
//! - `cleanup`: abandoned tasks, retired tasks and dead daemons
//!   ([`cleanup_once`]); safe in every daemon at once.
//! - `schedule`: enqueues the due occurrences of periodic tasks
//!   ([`schedule_once`]), waking at the next occurrence and at least every
//!   second; safe in every daemon at once (the store's compare-and-set
//!   lets one caller enqueue each occurrence).
//! - `cancel`: hears the store's notices of tasks cancelled by an operator
//!   and stops their attempts at once (the heartbeat finds any it missed).
//! - `attempt` and `settle`: each attempt bounded by its type's
//!   timeout; its end written with the attempt's fencing token, in batches,
//!   retried while the database is away (`retry`).
//!
//! `config` and `shutdown` hold what a program passes in.

mod attempt;
mod cancel;
mod claim;
mod cleanup;
mod config;
mod heartbeat;
mod reap;
mod retry;
mod schedule;
mod settle;
mod shutdown;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atp_core::{
    Attempt, AttemptSettled, DaemonId, DaemonInfo, Observer, StartedTask, Status, Store, TaskId,
};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::context::TaskContext;
use crate::handler::Registry;

pub use cleanup::{CleanupReport, cleanup_once};
pub use config::{DaemonConfig, DaemonError};
pub use schedule::{ScheduleReport, schedule_once};
pub use shutdown::{Shutdown, shutdown_on_signals};

pub(crate) use retry::retry_unavailable;
use settle::Settle;

/// A running attempt as the heartbeat sees it.
struct Running {
    ctx: TaskContext,
    /// When its handler began: a slot held longer than
    /// [`claim::AHEAD_WAIT_MOST`] is not counted as one that frees up soon.
    began: tokio::time::Instant,
}

/// State shared by the daemon's loops. Who writes each field is said on it.
struct Shared<S> {
    id: DaemonId,
    store: S,
    registry: Registry,
    config: DaemonConfig,
    /// Attempts whose handler runs: inserted by the claim loop when it
    /// spawns one, removed by the attempt when its handler is done.
    running: Mutex<HashMap<TaskId, Running>>,
    /// Attempts whose handler is done and whose end is being written
    /// (written by the attempt; read by reconciliation).
    settling: Mutex<HashSet<TaskId>>,
    /// Tasks claimed and started ahead, waiting for a free slot (written by
    /// the claim loop); heartbeated and reconciled like running ones.
    buffered: Mutex<HashMap<TaskId, Attempt>>,
    /// Tasks claimed ahead that an operator cancelled before their attempt
    /// began (written by the cancel loop, taken by `spawn_attempt`).
    cancelled_ahead: Mutex<HashSet<TaskId>>,
    /// Moving average of how long handlers run, in microseconds; `None`
    /// until the first handler ends (written by attempts, read by the
    /// claim loop to decide whether to claim ahead).
    handler_micros: AtomicU64,
    /// Signalled when an attempt ends (a slot is free).
    slot_freed: Notify,
    /// Signalled by in-process producers when they enqueue.
    wake: Arc<Notify>,
    /// Cancels every attempt (the grace period is over).
    abort_all: CancellationToken,
    /// Attempts whose end has been written.
    settled: SettledCounter,
    /// Attempts' ends on their way to the settler, which writes them in
    /// batches (one transaction for all that ended meanwhile).
    settle_tx: mpsc::UnboundedSender<Settle>,
    settle_rx: Mutex<Option<mpsc::UnboundedReceiver<Settle>>>,
    /// Hears about attempts' starts and ends (see [`Daemon::with_observer`]).
    observer: Option<Arc<dyn Observer>>,
}

/// No handler has ended yet: the average is unknown.
const UNKNOWN: u64 = u64::MAX;

/// How many attempts a daemon has brought to an end (written down), for
/// benchmarks and metrics. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SettledCounter(Arc<AtomicU64>);

impl SettledCounter {
    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A daemon over one store. See the module docs.
pub struct Daemon<S> {
    shared: Arc<Shared<S>>,
}

impl<S: Store + Clone> Daemon<S> {
    /// A daemon that runs what `registry` can run.
    pub fn new(store: S, registry: Registry, config: DaemonConfig) -> Self {
        let id = config.id.unwrap_or_else(|| DaemonId(rand::random()));
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        Daemon {
            shared: Arc::new(Shared {
                id,
                store,
                registry,
                config,
                running: Mutex::new(HashMap::new()),
                settling: Mutex::new(HashSet::new()),
                buffered: Mutex::new(HashMap::new()),
                cancelled_ahead: Mutex::new(HashSet::new()),
                handler_micros: AtomicU64::new(UNKNOWN),
                slot_freed: Notify::new(),
                wake: Arc::new(Notify::new()),
                abort_all: CancellationToken::new(),
                settled: SettledCounter::default(),
                settle_tx,
                settle_rx: Mutex::new(Some(settle_rx)),
                observer: None,
            }),
        }
    }

    /// Tells `observer` about every attempt this daemon starts and settles
    /// (see [`Observer`]). Set it before [`Daemon::run`]; a later call
    /// replaces the earlier observer.
    ///
    /// # Panics
    ///
    /// If the daemon has run already (its loops may still hold it).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("Daemon::with_observer is called before the daemon runs")
            .observer = Some(observer);
        self
    }

    /// The daemon's id.
    pub fn id(&self) -> DaemonId {
        self.shared.id
    }

    /// Counts the attempts this daemon has ended.
    pub fn settled_counter(&self) -> SettledCounter {
        self.shared.settled.clone()
    }

    /// Notify this after enqueueing in the same process: an idle daemon
    /// looks at the queue at once instead of at its next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.shared.wake.clone()
    }

    /// Runs until `shutdown` asks it to stop, then hands back or finishes
    /// every task it holds and removes its record.
    pub async fn run(&self, shutdown: Shutdown) -> Result<(), DaemonError> {
        let s = &self.shared;
        if s.config.concurrency == 0 {
            return Err(DaemonError::Config("concurrency must be at least 1".into()));
        }
        let Some(settle_rx) = s.settle_rx.lock().expect("settle queue").take() else {
            return Err(DaemonError::Config("a daemon runs only once".into()));
        };
        let span = info_span!("daemon", id = %s.id);
        async {
            let info = s.info();
            retry_unavailable(&shutdown.hard, "registering the daemon", || {
                s.store.daemon_register(&info)
            })
            .await
            .map_err(DaemonError::Register)?;
            info!(
                concurrency = s.config.concurrency,
                handlers = ?info.handlers,
                host = %info.host,
                pid = info.pid,
                "daemon started"
            );

            let background = CancellationToken::new();
            let mut loops = JoinSet::new();
            loops.spawn(
                cancel::cancel_loop(s.clone(), s.store.task_cancelled_watch(s.id), background.clone())
                    .in_current_span(),
            );
            loops.spawn(
                heartbeat::heartbeat_loop(s.clone(), info, background.clone()).in_current_span(),
            );
            loops.spawn(cleanup::cleanup_loop(s.clone(), background.clone()).in_current_span());
            loops.spawn(reap::reap_loop(s.clone(), background.clone()).in_current_span());
            if s.config.schedules {
                loops.spawn(
                    schedule::schedule_loop(s.clone(), background.clone()).in_current_span(),
                );
            }
            let settler = tokio::spawn(settle::settler_loop(s.clone(), settle_rx).in_current_span());

            let mut attempts = claim::claim_loop(s, &shutdown).await;

            // Graceful: let running attempts finish within the grace period.
            let held = s.running.lock().expect("running map").len();
            if held > 0 {
                info!(held, grace = ?s.config.grace_period, "stopping: waiting for running attempts");
            }
            tokio::select! {
                () = drain(&mut attempts) => {}
                () = tokio::time::sleep(s.config.grace_period) => {
                    warn!("grace period over: aborting the remaining attempts");
                }
                () = shutdown.hard.cancelled() => {
                    warn!("aborting the remaining attempts");
                }
            }
            s.abort_all.cancel();
            // Aborted attempts hand their tasks back; if the database is
            // away that cannot finish, and the other daemons rescue them.
            if tokio::time::timeout(FINAL_DRAIN, drain(&mut attempts))
                .await
                .is_err()
            {
                warn!("could not hand every task back; they will be rescued as a dead daemon's");
            }

            background.cancel();
            while loops.join_next().await.is_some() {}
            settler.abort();
            if let Err(e) = s.store.daemon_deregister(s.id).await {
                warn!(error = %e, "could not remove the daemon's record; it will be reaped as dead");
            }
            info!("daemon stopped");
            Ok(())
        }
        .instrument(span)
        .await
    }
}

/// How long a stopping daemon tries to write down its aborted attempts.
const FINAL_DRAIN: Duration = Duration::from_secs(20);

async fn drain(attempts: &mut JoinSet<()>) {
    while attempts.join_next().await.is_some() {}
}

impl<S> Shared<S> {
    /// The daemon's record, as registered (and registered again after it
    /// was taken for dead).
    fn info(&self) -> DaemonInfo {
        DaemonInfo {
            id: self.id,
            host: host_name(),
            pid: std::process::id(),
            started_at: time::OffsetDateTime::now_utc(),
            heartbeat_at: time::OffsetDateTime::now_utc(),
            handlers: self.registry.names(),
        }
    }

    /// Tells the observer that an operator's cancel ended an attempt.
    fn report_cancelled(&self, ctx: &TaskContext) {
        if let Some(observer) = &self.observer {
            observer.attempt_cancelled(&AttemptSettled::new(
                ctx.attempt(),
                ctx.start(),
                &ctx.task_type().name,
                Status::Cancelled,
            ));
        }
    }

    /// Tells the observer about starts the store has recorded.
    fn report_started(&self, started: &StartedTask) {
        if let Some(observer) = &self.observer {
            observer.attempt_started(started);
        }
    }

    /// Counts an attempt whose end is written (`status` is what the store
    /// wrote) and tells the observer.
    fn report_settled(&self, ctx: &TaskContext, status: Status, retried: bool) {
        self.settled.add_one();
        if let Some(observer) = &self.observer {
            observer.attempt_settled(
                &AttemptSettled::new(ctx.attempt(), ctx.start(), &ctx.task_type().name, status)
                    .retried(retried),
            );
        }
    }

    /// The handlers' average run time, once one has ended.
    fn handler_time(&self) -> Option<Duration> {
        match self.handler_micros.load(Ordering::Relaxed) {
            UNKNOWN => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    /// Folds one handler's run time into the moving average (weight 1/8).
    fn record_handler_time(&self, took: Duration) {
        let took = u64::try_from(took.as_micros())
            .unwrap_or(UNKNOWN - 1)
            .min(UNKNOWN - 1);
        let _ = self
            .handler_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == UNKNOWN {
                    took
                } else {
                    old - old / 8 + took / 8
                })
            });
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
