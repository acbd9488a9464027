//! A steady state: producers enqueue no-op tasks at a fixed rate while one
//! daemon runs them, for a set time. Shows whether a setup keeps up with a
//! given load, and (with a [`Sampler`]) whether the database's tables stop
//! growing once the retention period has passed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atp_core::{NewTask, Store, TaskIdentifier};

use super::{BenchError, Latency, fresh_type, identifier, join_all, millis, name, report_while};
use crate::daemon::{Daemon, DaemonConfig, Shutdown};
use crate::handler::Registry;
use crate::{HandlerResult, TaskContext};

/// What [`steady_state`] does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SteadyParams {
    /// How long the producers enqueue.
    pub duration: Duration,
    /// How often completions are counted (and the sampler asked).
    pub interval: Duration,
    /// Tasks offered per second, by all producers together.
    pub rate: f64,
    /// Producers enqueueing at once, one call at a time each.
    pub producers: usize,
    /// The daemon's concurrency.
    pub concurrency: usize,
    /// How long finished tasks are kept before the daemon's clean-up
    /// deletes them (the benchmark type's retention).
    pub retention: Duration,
}

/// Something to record at the start and at the end of every interval,
/// such as the sizes of the database's tables.
pub trait Sampler: Send {
    /// What one sample is.
    type Sample: Send;
    /// Takes a sample now.
    fn sample(&mut self) -> impl Future<Output = Self::Sample> + Send;
}

/// No samples.
impl Sampler for () {
    type Sample = ();
    async fn sample(&mut self) {}
}

/// One interval of a [`Steady`] run.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval<T> {
    /// Seconds from the start to this interval's end.
    pub end_secs: f64,
    /// This interval's length in seconds (the last may be shorter).
    pub secs: f64,
    /// Tasks enqueued in it.
    pub enqueued: u64,
    /// Tasks the daemon finished in it.
    pub completed: u64,
    /// The sampler's sample at its end.
    pub sample: T,
}

impl<T> Interval<T> {
    /// Completions per second.
    pub fn completed_per_sec(&self) -> f64 {
        self.completed as f64 / self.secs
    }
}

/// What [`steady_state`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Steady<T> {
    /// What was asked for.
    pub params: SteadyParams,
    /// The sampler's sample before the first task.
    pub start: T,
    /// Interval by interval.
    pub intervals: Vec<Interval<T>>,
    /// Tasks enqueued in all (calls that returned within the duration).
    pub enqueued: u64,
    /// Tasks finished in all (by the last interval's count, taken once
    /// the producers have stopped).
    pub completed: u64,
    /// How long each `task_enqueue` call took.
    pub enqueue_call: Option<Latency>,
    /// From an enqueue's return to its handler's first instruction, for
    /// every task enqueued within the duration that ran before the daemon
    /// stopped.
    pub pickup: Option<Latency>,
}

impl<T> Steady<T> {
    /// Tasks enqueued per second over the run.
    pub fn enqueued_per_sec(&self) -> f64 {
        self.enqueued as f64 / self.params.duration.as_secs_f64()
    }

    /// Tasks finished per second over the run.
    pub fn completed_per_sec(&self) -> f64 {
        self.completed as f64 / self.params.duration.as_secs_f64()
    }

    /// Tasks enqueued but not finished at the end: the daemon's lag.
    pub fn left_queued(&self) -> u64 {
        self.enqueued.saturating_sub(self.completed)
    }
}

/// Runs one daemon with `params.concurrency` slots while
/// `params.producers` producers enqueue `params.rate` no-op tasks a second
/// between them on a fixed schedule (a producer that falls behind
/// enqueues at once until it has caught up), for `params.duration`; then
/// deletes the benchmark's type and its tasks. `sampler` is asked at the
/// start and at each interval's end; `progress` is called with the whole
/// seconds elapsed.
pub async fn steady_state<S: Store + Clone, P: Sampler>(
    store: &S,
    params: SteadyParams,
    sampler: &mut P,
    mut progress: impl FnMut(usize),
) -> Result<Steady<P::Sample>, BenchError> {
    let t = name("atp-bench-steady");
    fresh_type(
        store,
        &t,
        "atp:bench-steady",
        params.retention.as_secs_f64(),
    )
    .await?;
    let pickups = Arc::new(Pickups::default());
    let mut registry = Registry::empty();
    {
        let pickups = pickups.clone();
        registry.register("atp:bench-steady", move |ctx: TaskContext| {
            let now = Instant::now();
            if let Some(k) = ticket(ctx.identifier()) {
                pickups.ran(k, now);
            }
            async { HandlerResult::Ok(()) }
        });
    }
    let config = DaemonConfig {
        concurrency: params.concurrency,
        types: Some(vec![t.clone()]),
        ..DaemonConfig::default()
    };
    let daemon = Daemon::new(store.clone(), registry, config);
    let counter = daemon.settled_counter();
    let shutdown = Shutdown::new();
    let run = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { daemon.run(shutdown).await })
    };
    // One task, not measured, before the clock starts: once its end is
    // written the daemon is registered, listening and idle, as it would be
    // in production, and the intervals count from there.
    store
        .task_enqueue(NewTask::new(t.clone(), identifier("warm-up")))
        .await?;
    let warm_until = Instant::now() + Duration::from_secs(30);
    while counter.get() == 0 {
        if Instant::now() > warm_until || run.is_finished() {
            shutdown.abort();
            return Err(BenchError::Stalled(
                "the warm-up task did not finish".into(),
            ));
        }
        // The settled count has no signal of its own: a deadline, and a
        // look every millisecond at an in-process counter.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let warmed_up = counter.get();

    let first = sampler.sample().await;
    let start = Instant::now();
    let end = start + params.duration;
    let enqueued = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..params.producers)
        .map(|_| {
            let producer = Producer {
                store: store.clone(),
                t: t.clone(),
                next: next.clone(),
                enqueued: enqueued.clone(),
                pickups: pickups.clone(),
                start,
                end,
                rate: params.rate,
            };
            tokio::spawn(producer.run())
        })
        .collect();

    let mut producers = Some(producers);
    let mut calls = Vec::new();
    let mut intervals = Vec::new();
    let (mut boundary, mut last_enqueued, mut last_completed) = (start, 0, warmed_up);
    while boundary < end {
        let from = boundary;
        boundary = (boundary + params.interval).min(end);
        let elapsed = || start.elapsed().as_secs() as usize;
        report_while(
            tokio::time::sleep_until(boundary.into()),
            elapsed,
            &mut progress,
        )
        .await;
        if run.is_finished() {
            break;
        }
        if boundary == end {
            // Counted once every producer has stopped, so that the
            // intervals add up to the totals exactly.
            for producer in join_all(producers.take().unwrap_or_default()).await {
                calls.extend(producer?);
            }
        }
        let (enqueued_now, completed_now) = (enqueued.load(Ordering::Relaxed), counter.get());
        intervals.push(Interval {
            end_secs: (boundary - start).as_secs_f64(),
            secs: (boundary - from).as_secs_f64(),
            enqueued: enqueued_now - last_enqueued,
            completed: completed_now - last_completed,
            sample: sampler.sample().await,
        });
        (last_enqueued, last_completed) = (enqueued_now, completed_now);
    }
    for producer in join_all(producers.take().unwrap_or_default()).await {
        calls.extend(producer?);
    }
    shutdown.stop();
    run.await
        .map_err(|e| BenchError::Stalled(format!("the daemon task failed: {e}")))??;
    if boundary < end {
        return Err(BenchError::Stalled("the daemon stopped early".into()));
    }
    store.task_type_delete(&t, true).await?;
    Ok(Steady {
        params,
        start: first,
        intervals,
        enqueued: last_enqueued,
        completed: last_completed - warmed_up,
        enqueue_call: Latency::of(calls),
        pickup: Latency::of(pickups.take()),
    })
}

/// The ticket of a task this benchmark enqueued (`s{ticket}`).
fn ticket(identifier: &TaskIdentifier) -> Option<usize> {
    identifier.as_str().strip_prefix('s')?.parse().ok()
}

/// One producer of a steady run. Producers share the schedule: ticket `k`
/// is due at `start + k / rate`, and each producer takes the next ticket
/// when its last call has returned.
struct Producer<S> {
    store: S,
    t: atp_core::TypeName,
    next: Arc<AtomicUsize>,
    enqueued: Arc<AtomicU64>,
    pickups: Arc<Pickups>,
    start: Instant,
    end: Instant,
    rate: f64,
}

impl<S: Store> Producer<S> {
    /// Enqueues until the end (or the next ticket is due after it);
    /// returns each call's duration in milliseconds.
    async fn run(self) -> Result<Vec<f64>, BenchError> {
        let mut calls = Vec::new();
        loop {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            let due = self.start + Duration::from_secs_f64(k as f64 / self.rate);
            // A producer behind schedule stops at the end too: what it
            // could not enqueue in time is the setup's shortfall.
            if due >= self.end || Instant::now() >= self.end {
                return Ok(calls);
            }
            tokio::time::sleep_until(due.into()).await;
            let call = Instant::now();
            self.store
                .task_enqueue(NewTask::new(self.t.clone(), identifier(&format!("s{k}"))))
                .await?;
            let returned = Instant::now();
            if returned >= self.end {
                // Not within the run: neither counted nor timed.
                return Ok(calls);
            }
            self.pickups.enqueued(k, returned);
            calls.push(millis(returned - call));
            self.enqueued.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Pairs each task's enqueue return with its handler's start, whichever
/// is heard of first (a handler can start before its enqueue call has
/// returned: that counts as 0).
#[derive(Default)]
struct Pickups(Mutex<PickupState>);

#[derive(Default)]
struct PickupState {
    /// Tasks heard of from one side only.
    unpaired: HashMap<usize, Side>,
    /// Pick-up latencies, milliseconds.
    paired: Vec<f64>,
}

enum Side {
    Enqueued(Instant),
    Ran(Instant),
}

impl Pickups {
    fn enqueued(&self, k: usize, at: Instant) {
        self.record(k, Side::Enqueued(at));
    }

    fn ran(&self, k: usize, at: Instant) {
        self.record(k, Side::Ran(at));
    }

    fn record(&self, k: usize, side: Side) {
        let mut state = self.0.lock().expect("pick-up pairs");
        match (state.unpaired.remove(&k), side) {
            (Some(Side::Enqueued(e)), Side::Ran(r)) | (Some(Side::Ran(r)), Side::Enqueued(e)) => {
                state.paired.push(millis(r.saturating_duration_since(e)));
            }
            // A second start of the same task (a retry) is not a pick-up.
            (Some(Side::Ran(r)), Side::Ran(_)) => {
                state.unpaired.insert(k, Side::Ran(r));
            }
            (_, side) => {
                state.unpaired.insert(k, side);
            }
        }
    }

    fn take(&self) -> Vec<f64> {
        std::mem::take(&mut self.0.lock().expect("pick-up pairs").paired)
    }
}
