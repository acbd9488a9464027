//! The claim loop: claims as many of the oldest ACCEPTED tasks as there are
//! free slots (and, while tasks are short, a batch ahead), starts them in
//! the same transaction, and spawns one attempt each.
//!
//! [`Claimer::claim_once`] is one pass; [`claim_loop`] adds the waiting
//! (for a free slot, for the queue, for a stop) and the back-off.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use atp_core::{ClaimParams, Error as StoreError, StartedTask, Store, TypeName};
use tokio::task::JoinSet;

use super::attempt::spawn_attempt;
use super::retry::Backoff;
use super::{Shared, Shutdown};

/// Below this average handler time a busy daemon claims a batch ahead.
/// Longer tasks are never claimed before a slot is free for them: another
/// daemon may be idle. Before any handler has ended the average is unknown,
/// and nothing is claimed ahead either.
pub(super) const PREFETCH_BELOW: Duration = Duration::from_millis(20);

/// At most this many tasks per slot are claimed ahead, however short the
/// tasks, and [`AHEAD_MOST`] in all. A claim of N tasks costs a fixed
/// ~0.3 ms plus ~40 µs a task on PostgreSQL, and the claim loop is one
/// round trip at a time: at concurrency 8, one batch ahead (8) drained
/// no-op tasks at ~6,700/s, 4 per slot at ~10,800/s, 8 at ~13,700/s and
/// 16 at ~15,500/s (BENCHMARKS.md, "Claim-ahead").
pub(super) const AHEAD_MOST_PER_SLOT: usize = 16;

/// The most tasks a daemon keeps claimed ahead, whatever its concurrency
/// (unless that is higher still: one per slot).
pub(super) const AHEAD_MOST: usize = 256;

/// How many tasks a busy daemon keeps claimed ahead: as many as its slots
/// are expected to finish within [`PREFETCH_BELOW`] (so a task claimed
/// ahead waits about that long at most for its slot, and another daemon
/// that is idle meanwhile misses little), at least one per slot, at most
/// [`AHEAD_MOST_PER_SLOT`] per slot and [`AHEAD_MOST`] in all. `None`
/// handler time (unknown) or one of `PREFETCH_BELOW` or more: nothing.
pub(super) fn ahead_target(concurrency: usize, handler_time: Option<Duration>) -> usize {
    match handler_time {
        Some(t) if t < PREFETCH_BELOW => {
            let per_slot = PREFETCH_BELOW
                .as_micros()
                .checked_div(t.as_micros())
                .map_or(AHEAD_MOST_PER_SLOT, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                });
            concurrency
                .saturating_mul(per_slot.clamp(1, AHEAD_MOST_PER_SLOT))
                .min(AHEAD_MOST.max(concurrency))
        }
        _ => 0,
    }
}

/// How long a busy daemon waits for more free slots before claiming: a
/// claim costs a round trip and a commit whatever its size.
const CLAIM_LINGER: Duration = Duration::from_millis(2);

/// How long the list of runnable types is reused before it is read again.
const TYPES_FRESH_FOR: Duration = Duration::from_secs(1);

/// What one pass of the claim loop did.
#[derive(Debug)]
pub(super) enum Pass {
    /// Every slot is busy and nothing may be claimed ahead.
    Full,
    /// No task type has a handler here.
    NoTypes,
    /// Listing the types or claiming (what) failed.
    Failed(&'static str, StoreError),
    /// The claim returned nothing: the queue has nothing for us.
    Empty,
    /// This many tasks were claimed and started (run now or buffered).
    Claimed(usize),
}

/// What a pass will claim, once it knows there is room.
struct Ready {
    want: usize,
    types: Vec<TypeName>,
}

/// The claim loop's state: the attempts it spawned, the tasks it claimed
/// ahead, the runnable types it last read.
pub(super) struct Claimer<S> {
    s: Arc<Shared<S>>,
    attempts: JoinSet<()>,
    /// Started tasks waiting for a slot, oldest first; mirrored in
    /// `Shared::buffered` for the heartbeat.
    ahead: VecDeque<StartedTask>,
    runnable: RunnableTypes,
}

impl<S: Store + Clone> Claimer<S> {
    pub(super) fn new(s: &Arc<Shared<S>>) -> Self {
        Claimer {
            s: s.clone(),
            attempts: JoinSet::new(),
            ahead: VecDeque::new(),
            runnable: RunnableTypes::default(),
        }
    }

    /// One pass: runs tasks claimed ahead in the slots that are free, then
    /// claims and starts what fits (the free slots, plus a batch ahead
    /// while tasks are short) and spawns or buffers each. The loop runs the
    /// same pass listening for new tasks ([`Claimer::claim_once_listening`]).
    #[cfg(test)]
    pub(super) async fn claim_once(&mut self) -> Pass {
        let never = std::pin::pin!(std::future::pending::<()>());
        self.claim_once_listening(never).await.0
    }

    /// [`Claimer::claim_once`], polling `listen` (the wait for new tasks)
    /// once just before the claim: a task enqueued while the claim runs
    /// must still end the wait that follows an empty claim. Also returns
    /// whether `listen` had resolved by then. `listen` is not polled when
    /// the pass claims nothing (all slots busy, no runnable type).
    pub(super) async fn claim_once_listening<W: Future<Output = ()>>(
        &mut self,
        mut listen: Pin<&mut W>,
    ) -> (Pass, bool) {
        let ready = match self.prepare().await {
            Ok(ready) => ready,
            Err(pass) => return (pass, false),
        };
        // Polling the wait once registers it.
        let woken_early = tokio::select! {
            biased;
            () = listen.as_mut() => true,
            () = std::future::ready(()) => false,
        };
        (self.claim(ready).await, woken_early)
    }

    /// The pass up to the claim: fills free slots from the tasks claimed
    /// ahead and works out how many to claim, and of which types.
    async fn prepare(&mut self) -> Result<Ready, Pass> {
        // Reap finished attempt tasks so the set does not grow.
        while self.attempts.try_join_next().is_some() {}
        let free = self.run_ahead();
        let s = &self.s;
        // With short tasks, claim a batch ahead while the slots are busy, so
        // the next claim's round trip overlaps the running batch. The
        // buffer is refilled once it is half empty, in one claim: many
        // small claims would cost a round trip and a commit each.
        let target = ahead_target(s.config.concurrency, s.handler_time());
        let room = if self.ahead.len() * 2 <= target {
            target - self.ahead.len()
        } else {
            0
        };
        if free == 0 && room == 0 {
            return Err(Pass::Full);
        }
        let types = self
            .runnable
            .get(s)
            .await
            .map_err(|e| Pass::Failed("listing task types", e))?;
        if types.is_empty() {
            return Err(Pass::NoTypes);
        }
        Ok(Ready {
            want: free + room,
            types,
        })
    }

    /// Claims and starts up to `ready.want` tasks in one transaction, then
    /// spawns one attempt per free slot and buffers the rest.
    async fn claim(&mut self, ready: Ready) -> Pass {
        let s = &self.s;
        let params = ClaimParams::new(s.id, u32::try_from(ready.want).unwrap_or(u32::MAX))
            .with_types(ready.types);
        // The claim is never raced or cancelled: a claim dropped mid-flight
        // may still commit, leaving tasks held by no attempt. While it runs,
        // slots that free up take tasks claimed ahead at once: with short
        // tasks they free up many times during one claim's round trip.
        let s = s.clone();
        let claim = s.store.task_claim_start(&params);
        tokio::pin!(claim);
        let started = loop {
            tokio::select! {
                biased;
                r = &mut claim => break r,
                () = s.slot_freed.notified(), if !self.ahead.is_empty() => {
                    self.run_ahead();
                }
            }
        };
        let started = match started {
            Ok(started) => started,
            Err(e) => return Pass::Failed("claiming tasks", e),
        };
        let s = &self.s;
        // The store has recorded these starts: report them now, whether
        // they run at once or wait ahead for a slot.
        s.report_started(&started);
        if started.is_empty() {
            return Pass::Empty;
        }
        let claimed = started.len();
        // Started even if a stop came meanwhile: they get the grace period
        // like every running attempt (handing them back would cost a start).
        let mut free = self.free();
        for task in started {
            if free > 0 {
                spawn_attempt(s, task, &mut self.attempts);
                free -= 1;
            } else {
                s.buffered
                    .lock()
                    .expect("buffer")
                    .insert(task.attempt.task, task.attempt);
                self.ahead.push_back(task);
            }
        }
        Pass::Claimed(claimed)
    }

    /// Runs tasks claimed ahead, oldest first, in the slots that are free;
    /// returns how many slots are still free.
    fn run_ahead(&mut self) -> usize {
        let mut free = self.free();
        while free > 0
            && let Some(task) = self.ahead.pop_front()
        {
            self.spawn_from_ahead(task);
            free -= 1;
        }
        free
    }

    /// Spawns the attempt of a task taken out of the buffer ahead.
    fn spawn_from_ahead(&mut self, task: StartedTask) {
        self.s
            .buffered
            .lock()
            .expect("buffer")
            .remove(&task.attempt.task);
        spawn_attempt(&self.s, task, &mut self.attempts);
    }

    /// Slots no attempt's handler occupies.
    fn free(&self) -> usize {
        let running = self.s.running.lock().expect("running map").len();
        self.s.config.concurrency.saturating_sub(running)
    }

    /// Stopping: what was claimed ahead is already started; run it within
    /// the grace period like the rest (it is short work by construction).
    /// Returns every attempt spawned, for the shutdown to wait on.
    pub(super) fn finish(mut self) -> JoinSet<()> {
        for task in std::mem::take(&mut self.ahead) {
            self.spawn_from_ahead(task);
        }
        self.attempts
    }

    /// Waits until an attempt's end frees a slot, or `shutdown`.
    #[cfg(test)]
    pub(super) async fn join_next(&mut self) -> Option<()> {
        self.attempts
            .join_next()
            .await
            .map(|r| r.expect("an attempt task panicked"))
    }
}

/// Claims and starts tasks until a stop is asked for; returns the attempts
/// it spawned (some may still run).
pub(super) async fn claim_loop<S: Store + Clone>(
    s: &Arc<Shared<S>>,
    shutdown: &Shutdown,
) -> JoinSet<()> {
    let mut claimer = Claimer::new(s);
    let mut backoff = Backoff::new();
    while !shutdown.graceful.is_cancelled() {
        // Creating the wait costs nothing; the pass polls it only when it
        // claims.
        let woken = s.store.wait_for_tasks(s.config.poll_interval);
        tokio::pin!(woken);
        let (pass, woken_early) = claimer.claim_once_listening(woken.as_mut()).await;
        match pass {
            Pass::Full => {
                tokio::select! {
                    () = s.slot_freed.notified() => {}
                    () = shutdown.graceful.cancelled() => {}
                }
                // Busy: let a few more attempts end so that the next claim
                // fetches a batch rather than one task per round trip. Not
                // while tasks wait ahead: the freed slot takes one now.
                if claimer.ahead.is_empty() {
                    linger_for_slots(s).await;
                }
            }
            Pass::NoTypes => {
                tokio::select! {
                    () = woken => {}
                    () = s.wake.notified() => {}
                    () = shutdown.graceful.cancelled() => {}
                }
            }
            Pass::Failed(what, e) => backoff.failed(&e, what, &shutdown.graceful).await,
            Pass::Empty => {
                backoff.reset();
                if woken_early {
                    continue;
                }
                let ahead = !claimer.ahead.is_empty();
                // A delayed task due before the next poll: sleep until then
                // (an enqueue of an earlier one ends the wait anyway).
                let due_in = next_due(s).await;
                tokio::select! {
                    () = woken => {}
                    () = s.wake.notified() => {}
                    () = tokio::time::sleep(due_in.unwrap_or_default()), if due_in.is_some() => {}
                    // Tasks claimed ahead run as soon as a slot frees.
                    () = s.slot_freed.notified(), if ahead => {}
                    () = shutdown.graceful.cancelled() => {}
                }
            }
            Pass::Claimed(n) => {
                backoff.reset();
                tracing::trace!(claimed = n, "claimed");
            }
        }
    }
    claimer.finish()
}

/// How long until the next delayed task is due, if one is; a failure to
/// ask only costs the precision of the next poll.
async fn next_due<S: Store>(s: &Shared<S>) -> Option<std::time::Duration> {
    match s.store.task_next_due().await {
        Ok(due_in) => due_in,
        Err(e) => {
            tracing::debug!(error = %e, "could not read the next due time");
            None
        }
    }
}

/// Waits (at most [`CLAIM_LINGER`]) until half the slots are free.
async fn linger_for_slots<S>(s: &Shared<S>) {
    let half = s.config.concurrency.div_ceil(2);
    let deadline = tokio::time::Instant::now() + CLAIM_LINGER;
    loop {
        let running = s.running.lock().expect("running map").len();
        if s.config.concurrency.saturating_sub(running) >= half {
            return;
        }
        tokio::select! {
            () = s.slot_freed.notified() => {}
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// Types whose handler this daemon can run (narrowed by
/// [`DaemonConfig::types`](super::DaemonConfig::types) when set), read
/// again every [`TYPES_FRESH_FOR`].
#[derive(Default)]
struct RunnableTypes {
    types: Vec<TypeName>,
    fetched: Option<tokio::time::Instant>,
}

impl RunnableTypes {
    async fn get<S: Store>(&mut self, s: &Shared<S>) -> atp_core::Result<Vec<TypeName>> {
        let fresh = self
            .fetched
            .is_some_and(|at| at.elapsed() < TYPES_FRESH_FOR);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{AHEAD_MOST, AHEAD_MOST_PER_SLOT, PREFETCH_BELOW, ahead_target};

    #[test]
    fn nothing_is_claimed_ahead_of_long_or_unknown_tasks() {
        assert_eq!(ahead_target(8, None), 0);
        assert_eq!(ahead_target(8, Some(PREFETCH_BELOW)), 0);
        assert_eq!(ahead_target(8, Some(PREFETCH_BELOW * 3)), 0);
    }

    #[test]
    fn the_buffer_holds_what_the_slots_finish_within_the_window() {
        // 15 ms tasks: one per slot (the slots finish 1.3 each in 20 ms).
        assert_eq!(ahead_target(8, Some(Duration::from_millis(15))), 8);
        // 10 ms tasks: two per slot.
        assert_eq!(ahead_target(8, Some(Duration::from_millis(10))), 16);
        // Very short (or instant) tasks: the cap per slot.
        let most = 8 * AHEAD_MOST_PER_SLOT;
        assert_eq!(ahead_target(8, Some(Duration::from_micros(10))), most);
        assert_eq!(ahead_target(8, Some(Duration::ZERO)), most);
        assert_eq!(ahead_target(1, Some(Duration::ZERO)), AHEAD_MOST_PER_SLOT);
    }

    #[test]
    fn a_wide_daemon_keeps_at_most_the_overall_cap_ahead() {
        assert_eq!(ahead_target(64, Some(Duration::ZERO)), AHEAD_MOST);
        // Wider than the cap: still one per slot.
        assert_eq!(ahead_target(1000, Some(Duration::ZERO)), 1000);
    }
}
