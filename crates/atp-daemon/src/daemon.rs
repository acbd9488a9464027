//! The daemon: claims tasks it can run, runs up to `concurrency` at once,
//! heartbeats, rescues the work of dead daemons, cleans up, and shuts down
//! without losing a task.
//!
//! Four loops share one [`Daemon`]:
//! - **claim**: claims as many of the oldest ACCEPTED tasks as it has free
//!   slots (only types whose handler it can run), starts them and spawns
//!   one attempt each; when the queue is empty it waits for the poll
//!   interval or an in-process wake-up ([`Daemon::waker`]).
//! - **heartbeat**: refreshes the daemon's record and every running
//!   attempt's update time; an attempt whose heartbeat is refused (the task
//!   was rescued meanwhile) is cancelled and its late result dropped.
//! - **clean-up**: abandoned tasks, retired tasks and dead daemons; safe in
//!   every daemon at once (the store's operations are compare-and-set).
//! - **attempts**: each bounded by its type's timeout; the result is written
//!   with the attempt's fencing token, retried while the database is away.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atp_core::{
    Attempt, ClaimParams, DaemonId, DaemonInfo, Error as StoreError, Status, StatusChange, Store,
    StoreExt as _, TaskFilter, TaskId, TypeName,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::context::{AttemptStore, TaskContext};
use crate::handler::{HandlerError, Registry, Resolved};
use crate::observer::Observer;

/// How a daemon behaves. Every duration has a default that suits one host;
/// see the field docs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The daemon's id; random when `None`.
    pub id: Option<DaemonId>,
    /// Attempts running at once (default: the number of CPUs).
    pub concurrency: usize,
    /// Only these types (in addition to "a handler this daemon can run").
    pub types: Option<Vec<TypeName>>,
    /// How long an idle daemon waits before looking at the queue again
    /// (default 200 ms). An in-process wake-up cuts it short.
    pub poll_interval: Duration,
    /// How often the daemon and its running attempts heartbeat (default 2 s).
    pub heartbeat_interval: Duration,
    /// A daemon silent this long is dead and its tasks are rescued
    /// (default 15 s; keep it several heartbeat intervals long).
    pub dead_after: Duration,
    /// How often the clean-up runs (default 10 s, with jitter).
    pub cleanup_interval: Duration,
    /// How long a graceful shutdown lets running attempts finish
    /// (default 30 s).
    pub grace_period: Duration,
    /// Retired tasks deleted per statement (default 1,000).
    pub retire_batch: u32,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            id: None,
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            types: None,
            poll_interval: Duration::from_millis(200),
            heartbeat_interval: Duration::from_secs(2),
            dead_after: Duration::from_secs(15),
            cleanup_interval: Duration::from_secs(10),
            grace_period: Duration::from_secs(30),
            retire_batch: 1_000,
        }
    }
}

/// Errors that stop a daemon (everything else is logged and retried).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration cannot work.
    #[error("invalid daemon configuration: {0}")]
    Config(String),
    /// The daemon could not record itself in the database.
    #[error("registering the daemon: {0}")]
    Register(#[source] StoreError),
}

/// Asks a daemon to stop: [`Shutdown::stop`] stops claiming and lets
/// running attempts finish within the grace period; [`Shutdown::abort`]
/// cancels them at once. Either way every task ends back in the queue or
/// settled. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    graceful: CancellationToken,
    hard: CancellationToken,
}

impl Shutdown {
    /// A handle that nothing has triggered yet.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Graceful stop.
    pub fn stop(&self) {
        self.graceful.cancel();
    }

    /// Immediate stop (implies [`Shutdown::stop`]).
    pub fn abort(&self) {
        self.graceful.cancel();
        self.hard.cancel();
    }

    /// Whether a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        self.graceful.is_cancelled()
    }

    /// Resolves when a stop is asked for (graceful or abort).
    pub async fn stopping(&self) {
        self.graceful.cancelled().await;
    }
}

/// A [`Shutdown`] driven by SIGINT and SIGTERM: the first signal stops
/// gracefully, the second aborts.
pub fn shutdown_on_signals() -> Shutdown {
    let shutdown = Shutdown::new();
    let handle = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            error!("cannot listen for SIGINT/SIGTERM; stop the daemon with SIGKILL");
            return;
        };
        for round in 0..2 {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if round == 0 {
                info!("signal received: stopping gracefully (send another to abort)");
                handle.stop();
            } else {
                warn!("second signal: aborting running attempts");
                handle.abort();
            }
        }
    });
    shutdown
}

/// Why an attempt was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelCause {
    /// It overran its type's timeout.
    Timeout,
    /// The daemon is shutting down and the grace period is over (or it was
    /// aborted).
    Shutdown,
}

struct Running {
    ctx: TaskContext,
    cancel: CancellationToken,
}

/// State shared by the daemon's loops.
struct Shared<S> {
    id: DaemonId,
    store: S,
    registry: Registry,
    config: DaemonConfig,
    running: Mutex<HashMap<TaskId, Running>>,
    /// Attempts whose handler is done and whose end is being written.
    settling: Mutex<HashSet<TaskId>>,
    /// Tasks claimed and started ahead, waiting here for a free slot (see
    /// [`PREFETCH_BELOW`]); heartbeated and reconciled like running ones.
    buffered: Mutex<HashMap<TaskId, Attempt>>,
    /// Moving average of how long handlers run, in microseconds.
    handler_micros: std::sync::atomic::AtomicU64,
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

/// An attempt's end and where to report whether it was written.
type Settle = (StatusChange, oneshot::Sender<atp_core::Result<()>>);

/// How many attempts a daemon has brought to an end (written down), for
/// benchmarks and metrics. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SettledCounter(Arc<std::sync::atomic::AtomicU64>);

impl SettledCounter {
    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn add_one(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
                handler_micros: std::sync::atomic::AtomicU64::new(u64::MAX),
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
            let info = DaemonInfo {
                id: s.id,
                host: host_name(),
                pid: std::process::id(),
                started_at: time::OffsetDateTime::now_utc(),
                heartbeat_at: time::OffsetDateTime::now_utc(),
                handlers: s.registry.names(),
            };
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
            loops.spawn(heartbeat_loop(s.clone(), info.clone(), background.clone()).in_current_span());
            loops.spawn(cleanup_loop(s.clone(), background.clone()).in_current_span());
            let settler = tokio::spawn(settler_loop(s.clone(), settle_rx).in_current_span());

            let mut attempts = JoinSet::new();
            claim_loop(s, &shutdown, &mut attempts).await;

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

/// Claims and starts tasks until a stop is asked for.
async fn claim_loop<S: Store + Clone>(
    s: &Arc<Shared<S>>,
    shutdown: &Shutdown,
    attempts: &mut JoinSet<()>,
) {
    let mut backoff = Backoff::new();
    let mut runnable = RunnableTypes::default();
    let mut ahead: std::collections::VecDeque<atp_core::StartedTask> = Default::default();
    while !shutdown.graceful.is_cancelled() {
        // Reap finished attempt tasks so the set does not grow.
        while attempts.try_join_next().is_some() {}
        let mut free = s.config.concurrency - s.running.lock().expect("running map").len();
        while free > 0
            && let Some(task) = ahead.pop_front()
        {
            s.buffered
                .lock()
                .expect("buffer")
                .remove(&task.attempt.task);
            spawn_attempt(s, task, attempts);
            free -= 1;
        }
        // With short tasks, claim a batch ahead while the slots are busy, so
        // the next claim's round trip overlaps the running batch.
        let room = if s.tasks_are_short() {
            s.config.concurrency.saturating_sub(ahead.len())
        } else {
            0
        };
        if free == 0 && room == 0 {
            tokio::select! {
                () = s.slot_freed.notified() => {}
                () = shutdown.graceful.cancelled() => {}
            }
            // Busy: let a few more attempts end so that the next claim
            // fetches a batch rather than one task per round trip.
            linger_for_slots(s).await;
            continue;
        }
        let types = match runnable.get(s).await {
            Ok(types) => types,
            Err(e) => {
                backoff
                    .failed(&e, "listing task types", &shutdown.graceful)
                    .await;
                continue;
            }
        };
        if types.is_empty() {
            idle(s, shutdown).await;
            continue;
        }
        let want = free + room;
        let params =
            ClaimParams::new(s.id, u32::try_from(want).unwrap_or(u32::MAX)).with_types(types);
        // Listen before looking: a task enqueued while the claim runs must
        // still wake the wait below.
        // (Polling the wait once registers it.) The claim itself is never
        // raced or cancelled: a claim dropped mid-flight may still commit,
        // leaving tasks held by no attempt.
        let woken = s.store.wait_for_tasks(s.config.poll_interval);
        tokio::pin!(woken);
        let mut woken_early = false;
        tokio::select! {
            biased;
            () = &mut woken => woken_early = true,
            () = std::future::ready(()) => {}
        }
        // Claimed and started in one transaction: tasks come back RUNNING.
        let started = match s.store.task_claim_start(&params).await {
            Ok(started) => started,
            Err(e) => {
                backoff
                    .failed(&e, "claiming tasks", &shutdown.graceful)
                    .await;
                continue;
            }
        };
        backoff.reset();
        // The store has recorded these starts: report them now, whether
        // they run at once or wait ahead for a slot.
        s.report_started(&started);
        if started.is_empty() {
            if woken_early {
                continue;
            }
            tokio::select! {
                () = woken => {}
                () = s.wake.notified() => {}
                // Tasks claimed ahead run as soon as a slot frees.
                () = s.slot_freed.notified(), if !ahead.is_empty() => {}
                () = shutdown.graceful.cancelled() => {}
            }
            continue;
        }
        // Started even if a stop came meanwhile: they get the grace period
        // like every running attempt (handing them back would cost a start).
        for task in started {
            if free > 0 {
                spawn_attempt(s, task, attempts);
                free -= 1;
            } else {
                s.buffered
                    .lock()
                    .expect("buffer")
                    .insert(task.attempt.task, task.attempt);
                ahead.push_back(task);
            }
        }
    }
    // Stopping: what was claimed ahead is already started; run it within
    // the grace period like the rest (it is short work by construction).
    for task in ahead {
        s.buffered
            .lock()
            .expect("buffer")
            .remove(&task.attempt.task);
        spawn_attempt(s, task, attempts);
    }
}

/// Below this average handler time a busy daemon claims a batch ahead.
/// Longer tasks are never claimed before a slot is free for them: another
/// daemon may be idle.
const PREFETCH_BELOW: Duration = Duration::from_millis(20);

impl<S> Shared<S> {
    /// Tells the observer about starts the store has recorded.
    fn report_started(&self, started: &[atp_core::StartedTask]) {
        if let Some(observer) = &self.observer {
            for task in started {
                observer.attempt_started(task);
            }
        }
    }

    /// Counts an attempt whose end is written (`status` is what the store
    /// wrote) and tells the observer.
    fn report_settled(&self, task_type: &TypeName, status: Status) {
        self.settled.add_one();
        if let Some(observer) = &self.observer {
            observer.attempt_settled(task_type, status);
        }
    }

    fn tasks_are_short(&self) -> bool {
        let micros = self
            .handler_micros
            .load(std::sync::atomic::Ordering::Relaxed);
        micros < PREFETCH_BELOW.as_micros() as u64
    }

    /// Folds one handler's run time into the moving average (weight 1/8).
    fn record_handler_time(&self, took: Duration) {
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let _ = self.handler_micros.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |old| {
                Some(if old == u64::MAX {
                    took
                } else {
                    old - old / 8 + took / 8
                })
            },
        );
    }
}

/// Waits (at most [`CLAIM_LINGER`]) until half the slots are free.
async fn linger_for_slots<S>(s: &Shared<S>) {
    let half = s.config.concurrency.div_ceil(2);
    let deadline = tokio::time::Instant::now() + CLAIM_LINGER;
    loop {
        let free = s.config.concurrency - s.running.lock().expect("running map").len();
        if free >= half {
            return;
        }
        tokio::select! {
            () = s.slot_freed.notified() => {}
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// How long a busy daemon waits for more free slots before claiming: a
/// claim costs a round trip and a commit whatever its size.
const CLAIM_LINGER: Duration = Duration::from_millis(2);

/// Waits for the poll interval, a wake-up or a stop.
async fn idle<S: Store>(s: &Shared<S>, shutdown: &Shutdown) {
    tokio::select! {
        () = s.store.wait_for_tasks(s.config.poll_interval) => {}
        () = s.wake.notified() => {}
        () = shutdown.graceful.cancelled() => {}
    }
}

/// Types whose handler this daemon can run, refreshed every second.
#[derive(Default)]
struct RunnableTypes {
    types: Vec<TypeName>,
    fetched: Option<tokio::time::Instant>,
}

impl RunnableTypes {
    async fn get<S: Store>(&mut self, s: &Shared<S>) -> atp_core::Result<Vec<TypeName>> {
        let fresh = self
            .fetched
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1));
        if !fresh {
            let all = s.store.task_type_list().await?;
            self.types = all
                .into_iter()
                .filter(|t| s.registry.can_run(t.handler.as_str()))
                .filter(|t| {
                    s.config
                        .types
                        .as_ref()
                        .is_none_or(|only| only.contains(&t.name))
                })
                .map(|t| t.name)
                .collect();
            self.fetched = Some(tokio::time::Instant::now());
        }
        Ok(self.types.clone())
    }
}

/// Puts claimed-but-not-started tasks back in the queue at once.
async fn hand_back<S: Store>(s: &Shared<S>, holds: &[Attempt], reason: &str) {
    let changes: Vec<StatusChange> = holds
        .iter()
        .map(|a| StatusChange::new(*a, Status::Accepted, reason))
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

fn spawn_attempt<S: Store + Clone>(
    s: &Arc<Shared<S>>,
    started: atp_core::StartedTask,
    attempts: &mut JoinSet<()>,
) {
    let cancel = s.abort_all.child_token();
    let task = started.attempt.task;
    let handler = started.task_type.handler.as_str().to_owned();
    let store: Arc<dyn AttemptStore> = Arc::new(s.store.clone());
    let ctx = TaskContext::new(started, s.id, store, cancel.clone());
    s.running.lock().expect("running map").insert(
        task,
        Running {
            ctx: ctx.clone(),
            cancel: cancel.clone(),
        },
    );
    let shared = s.clone();
    let span = info_span!("attempt", task = %task, start = ctx.start());
    attempts.spawn(
        async move {
            run_attempt(&shared, ctx, &handler, cancel).await;
        }
        .instrument(span),
    );
}

/// How an attempt ended, before it is written down.
enum Ending {
    Returned(Result<(), HandlerError>),
    Panicked(String),
    Cancelled(CancelCause),
}

async fn run_attempt<S: Store>(
    s: &Shared<S>,
    ctx: TaskContext,
    handler: &str,
    cancel: CancellationToken,
) {
    let timeout = Duration::try_from_secs_f64(ctx.task_type().timeout_secs)
        .unwrap_or(Duration::from_secs(3600));
    let began = tokio::time::Instant::now();
    let work = {
        let ctx = ctx.clone();
        match s.registry.resolve(handler) {
            Some(Resolved::Named(h)) => tokio::spawn(h.run(ctx)),
            Some(Resolved::Exec(command)) => {
                tokio::spawn(async move { crate::exec::run(&command, ctx).await })
            }
            None => tokio::spawn(std::future::ready(Err(HandlerError::new(format!(
                "no handler for {handler:?} in this daemon"
            ))))),
        }
    };
    tokio::pin!(work);
    let joined = |r: Result<Result<(), HandlerError>, tokio::task::JoinError>| match r {
        Ok(result) => Ending::Returned(result),
        Err(e) if e.is_panic() => Ending::Panicked(panic_text(e.into_panic())),
        Err(_) => Ending::Cancelled(CancelCause::Shutdown),
    };
    let mut work_done = false;
    let ending = tokio::select! {
        biased;
        () = cancel.cancelled() => Ending::Cancelled(CancelCause::Shutdown),
        () = tokio::time::sleep(timeout) => {
            cancel.cancel();
            Ending::Cancelled(CancelCause::Timeout)
        }
        r = &mut work => {
            work_done = true;
            joined(r)
        }
    };
    s.record_handler_time(began.elapsed());
    // A handler that gave up because it was cancelled (say `builtin:sleep`
    // returning "cancelled") did not fail on its own: its task goes back to
    // the queue. One that finished anyway keeps its result.
    let ending = match ending {
        Ending::Returned(Err(_)) | Ending::Panicked(_) if cancel.is_cancelled() => {
            Ending::Cancelled(CancelCause::Shutdown)
        }
        other => other,
    };
    if let Ending::Cancelled(cause) = ending {
        // Give the handler a moment to notice and clean up (an exec handler
        // kills its process group), then drop it.
        if !work_done
            && tokio::time::timeout(Duration::from_secs(5), &mut work)
                .await
                .is_err()
        {
            work.abort();
        }
        release_slot(s, &ctx);
        settle(s, &ctx, Ending::Cancelled(cause)).await;
    } else {
        release_slot(s, &ctx);
        settle(s, &ctx, ending).await;
    }
}

/// Frees the attempt's slot as soon as its handler is done, before its end
/// is written: the claim loop fetches the next tasks while the settler
/// writes this batch, so the two round trips overlap. The attempt's task
/// itself lives on until the write is acknowledged (a stop waits for it).
fn release_slot<S>(s: &Shared<S>, ctx: &TaskContext) {
    s.settling.lock().expect("settling set").insert(ctx.id());
    s.running.lock().expect("running map").remove(&ctx.id());
    s.slot_freed.notify_one();
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".to_owned())
}

/// Writes how the attempt ended, unless the attempt lost the task.
async fn settle<S: Store>(s: &Shared<S>, ctx: &TaskContext, ending: Ending) {
    write_end(s, ctx, ending).await;
    s.settling.lock().expect("settling set").remove(&ctx.id());
}

async fn write_end<S: Store>(s: &Shared<S>, ctx: &TaskContext, ending: Ending) {
    // The handler gave the task its final status itself: that end is
    // written already and stays, whatever the handler did next (returned
    // an error, panicked, overran its timeout: a final status is not
    // changed by any of those), even if the attempt was marked lost since
    // (a daemon taken for dead loses only the tasks it still held).
    if let Some(status) = ctx.settled_status() {
        s.report_settled(&ctx.task_type().name, status);
        debug!(?status, "attempt settled by its handler");
        return;
    }
    if ctx.lost() {
        info!("attempt lost its task (rescued elsewhere); its result is dropped");
        return;
    }
    let attempt = ctx.attempt();
    let change = match ending {
        Ending::Returned(Ok(())) => {
            StatusChange::new(attempt, Status::Finished, "Finished").unless_terminal()
        }
        Ending::Returned(Err(e)) => {
            StatusChange::new(attempt, Status::Failed, e.message()).unless_terminal()
        }
        Ending::Panicked(text) => {
            StatusChange::new(attempt, Status::Failed, format!("Handler panicked: {text}"))
                .unless_terminal()
        }
        Ending::Cancelled(CancelCause::Timeout) => StatusChange::new(
            attempt,
            Status::Accepted,
            format!(
                "Attempt {} overran the type's timeout of {} s and was aborted by {}",
                ctx.start(),
                ctx.task_type().timeout_secs,
                s.id
            ),
        ),
        Ending::Cancelled(CancelCause::Shutdown) => StatusChange::new(
            attempt,
            Status::Accepted,
            format!(
                "Aborted: daemon {} shut down before the attempt ended",
                s.id
            ),
        ),
    };
    let status = change.status;
    let (ack, written) = oneshot::channel();
    if s.settle_tx.send((change, ack)).is_err() {
        error!("the settler is gone; the task will be rescued");
        return;
    }
    match written.await {
        Ok(Ok(())) => {
            // A task handed back with all its starts used is failed by
            // the store instead.
            let written = match status {
                Status::Accepted => {
                    atp_core::status::after_release(ctx.start(), ctx.task_type().max_starts)
                }
                other => other,
            };
            s.report_settled(&ctx.task_type().name, written);
            debug!(status = ?written, "attempt settled");
        }
        Ok(Err(StoreError::StaleAttempt { .. })) => {
            info!("attempt lost its task before it ended; its result is dropped");
        }
        Ok(Err(StoreError::InvalidTransition { .. })) if status == Status::Accepted => {
            // The task already has a final status: the handler's own
            // finish or fail, whose reply was lost.
            debug!("attempt had already settled");
        }
        Ok(Err(e)) => {
            error!(error = %e, "could not record an attempt's end; the task will be rescued")
        }
        Err(_) => error!("the settler stopped before writing an attempt's end"),
    }
}

/// Writes attempts' ends in batches: whatever ended while the previous
/// batch was being written goes in the next transaction, so a busy daemon
/// pays one commit for many tasks. Each change keeps its own result.
async fn settler_loop<S: Store>(s: Arc<Shared<S>>, mut queue: mpsc::UnboundedReceiver<Settle>) {
    const MOST: usize = 256;
    let never = CancellationToken::new();
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MOST {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let changes: Vec<StatusChange> = batch.iter().map(|(c, _)| c.clone()).collect();
        let written = retry_unavailable(&never, "recording attempts' ends", || {
            s.store.task_set_status_many(&changes)
        })
        .await;
        match written {
            Ok(results) => {
                for ((_, ack), result) in batch.into_iter().zip(results) {
                    let _ = ack.send(result);
                }
            }
            Err(e) => {
                // The batch as a whole failed: try each on its own, so
                // every attempt learns its own fate.
                warn!(error = %e, "writing a batch of attempts' ends failed; writing them one by one");
                for (change, ack) in batch {
                    let result = retry_unavailable(&never, "recording an attempt's end", || {
                        s.store.task_set_status(change.clone())
                    })
                    .await;
                    let _ = ack.send(result);
                }
            }
        }
    }
}

/// Heartbeats the daemon and its attempts until `stop`.
async fn heartbeat_loop<S: Store>(s: Arc<Shared<S>>, info: DaemonInfo, stop: CancellationToken) {
    let mut tick = tokio::time::interval(s.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut suspects: HashMap<TaskId, u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        reconcile(&s, &mut suspects).await;
        match s.store.daemon_heartbeat(s.id).await {
            Ok(true) => {}
            Ok(false) => {
                // Reaped as dead (a stall longer than `dead_after`): every
                // task we held has been rescued. Stop those attempts and
                // record ourselves again.
                warn!("this daemon was taken for dead; its attempts are cancelled");
                for r in s.running.lock().expect("running map").values() {
                    r.ctx.mark_lost();
                }
                if let Err(e) = s.store.daemon_register(&info).await {
                    warn!(error = %e, "could not record the daemon again");
                }
            }
            Err(e) => warn!(error = %e, "daemon heartbeat failed"),
        }
        let mut holds: Vec<(Attempt, CancellationToken)> = s
            .running
            .lock()
            .expect("running map")
            .values()
            .map(|r| (r.ctx.attempt(), r.cancel.clone()))
            .collect();
        // Claimed ahead and waiting for a slot: keep them alive too.
        holds.extend(
            s.buffered
                .lock()
                .expect("buffer")
                .values()
                .map(|a| (*a, CancellationToken::new())),
        );
        if holds.is_empty() {
            continue;
        }
        let attempts: Vec<Attempt> = holds.iter().map(|(a, _)| *a).collect();
        match s.store.task_heartbeat_many(&attempts).await {
            Ok(results) => {
                for ((attempt, _), r) in holds.iter().zip(results) {
                    if let Err(StoreError::StaleAttempt { .. }) = r {
                        let running = s.running.lock().expect("running map");
                        match running.get(&attempt.task) {
                            // Still running and not ended by its handler:
                            // the task was taken from this attempt.
                            Some(run) if !run.ctx.settled() => {
                                warn!(task = %attempt.task, "attempt lost its task; cancelling it");
                                run.ctx.mark_lost();
                            }
                            // The attempt ended between the listing and the
                            // heartbeat: nothing was lost.
                            _ => debug!(task = %attempt.task, "heartbeat raced the attempt's end"),
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "task heartbeat failed"),
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
        hand_back(
            s,
            &orphans,
            "Held by its daemon but not running there (the reply to a claim or start was lost); re-enqueued",
        )
        .await;
    }
}

/// Runs the clean-ups every `cleanup_interval` (with jitter, so daemons
/// started together spread out) until `stop`.
async fn cleanup_loop<S: Store>(s: Arc<Shared<S>>, stop: CancellationToken) {
    loop {
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        let wait = s.config.cleanup_interval.mul_f64(jitter);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        cleanup_once(&s.store, s.config.dead_after, s.config.retire_batch).await;
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

/// Runs every clean-up once: abandoned tasks, retired tasks, dead daemons.
/// Errors are logged; what succeeded is reported.
pub async fn cleanup_once<S: Store>(
    store: &S,
    dead_after: Duration,
    retire_batch: u32,
) -> CleanupReport {
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
    match store.daemon_reap_dead(dead_after.as_secs_f64()).await {
        Ok(reaped) => {
            for d in &reaped {
                warn!(daemon = %d.id, rescued = d.rescued.len(), "dead daemon reaped");
                report.rescued += d.rescued.len();
            }
            report.dead_daemons = reaped.len();
        }
        Err(e) => warn!(error = %e, "reaping dead daemons failed"),
    }
    if report != CleanupReport::default() {
        info!(?report, "clean-up");
    }
    report
}

/// Calls `op` until it succeeds, fails for a reason other than the
/// database being unreachable, or `give_up` fires; backs off up to 5 s.
async fn retry_unavailable<T, F, Fut>(
    give_up: &CancellationToken,
    what: &str,
    mut op: F,
) -> atp_core::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = atp_core::Result<T>>,
{
    let mut backoff = Backoff::new();
    loop {
        match op().await {
            Err(e @ StoreError::Unavailable { .. }) if !give_up.is_cancelled() => {
                backoff.failed(&e, what, give_up).await;
            }
            other => return other,
        }
    }
}

/// Exponential back-off from 50 ms to 5 s, logging each failure.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: Duration::from_millis(50),
        }
    }

    fn reset(&mut self) {
        self.next = Duration::from_millis(50);
    }

    async fn failed(&mut self, e: &StoreError, what: &str, cut_short: &CancellationToken) {
        warn!(error = %e, retry_in = ?self.next, "{what} failed");
        tokio::select! {
            () = tokio::time::sleep(self.next) => {}
            () = cut_short.cancelled() => {}
        }
        self.next = (self.next * 2).min(Duration::from_secs(5));
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
