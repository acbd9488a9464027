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

use atp_core::{
    ClaimParams, Error as StoreError, StartedTask, Status, StatusChange, Store, TypeName,
};
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

/// The longest a task claimed ahead waits for a slot here: then it is
/// handed back to the queue, unstarted and in its place, for another
/// daemon (or this one, later). A buffer sized for [`PREFETCH_BELOW`] of
/// short work is emptied well within this, unless the slots went to long
/// tasks meanwhile; slots whose attempt has run this long are not counted
/// as ones that free up soon ([`Claimer::prepare`]).
pub(super) const AHEAD_WAIT_MOST: Duration = Duration::from_millis(100);

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

/// What a pass will claim, once it knows there is room: `want` tasks, the
/// first `free` of them to start at once in the slots free now.
struct Ready {
    want: usize,
    free: usize,
    types: Vec<TypeName>,
}

/// The claim loop's state: the attempts it spawned, the tasks it claimed
/// ahead, the runnable types it last read.
pub(super) struct Claimer<S> {
    s: Arc<Shared<S>>,
    attempts: JoinSet<()>,
    /// Tasks claimed ahead (SCHEDULED) waiting for a slot, oldest first,
    /// with when they were claimed; mirrored in `Shared::buffered` for the
    /// heartbeat.
    ahead: VecDeque<(tokio::time::Instant, StartedTask)>,
    runnable: RunnableTypes,
    /// [`AHEAD_WAIT_MOST`]; tests that are not about the wait lengthen it
    /// ([`Claimer::lengthen_ahead_wait_for_test`]) so that a slow machine
    /// never hands back what they count.
    ahead_wait: Duration,
}

impl<S: Store + Clone> Claimer<S> {
    pub(super) fn new(s: &Arc<Shared<S>>) -> Self {
        Claimer {
            s: s.clone(),
            attempts: JoinSet::new(),
            ahead: VecDeque::new(),
            runnable: RunnableTypes::default(),
            ahead_wait: AHEAD_WAIT_MOST,
        }
    }

    /// Makes the wait of tasks claimed ahead (and of a slot's attempt
    /// before it counts as long) an hour: for tests of the batch sizes,
    /// whose counts a hand-back on a loaded machine would change.
    #[cfg(test)]
    pub(super) fn lengthen_ahead_wait_for_test(&mut self) {
        self.ahead_wait = Duration::from_secs(3600);
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
        self.hand_back_waited();
        let free = self.run_ahead(0);
        let s = &self.s;
        // With short tasks, claim a batch ahead while the slots are busy, so
        // the next claim's round trip overlaps the running batch. The
        // buffer is refilled once it is half empty, in one claim: many
        // small claims would cost a round trip and a commit each. Slots
        // held by long attempts will not take any of it soon.
        let target = ahead_target(self.slots_freeing_soon(), s.handler_time());
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
            free,
            types,
        })
    }

    /// Slots that are free or whose attempt began less than
    /// [`AHEAD_WAIT_MOST`] ago.
    fn slots_freeing_soon(&self) -> usize {
        let running = self.s.running.lock().expect("running map");
        let long = running
            .values()
            .filter(|r| r.began.elapsed() >= self.ahead_wait)
            .count();
        self.s.config.concurrency.saturating_sub(long)
    }

    /// Makes every task claimed ahead and every running attempt `by` older,
    /// as if the clock had moved (tests of the waits, without waiting).
    #[cfg(test)]
    pub(super) fn age_for_test(&mut self, by: Duration) {
        let older = |at: tokio::time::Instant| at.checked_sub(by).expect("an instant that old");
        for (at, _) in &mut self.ahead {
            *at = older(*at);
        }
        for run in self.s.running.lock().expect("running map").values_mut() {
            run.began = older(run.began);
        }
    }

    /// When the oldest task claimed ahead has waited [`AHEAD_WAIT_MOST`].
    pub(super) fn next_hand_back(&self) -> Option<tokio::time::Instant> {
        self.ahead.front().map(|(at, _)| *at + self.ahead_wait)
    }

    /// Hands back to the queue, unstarted and keeping their place, the
    /// tasks claimed ahead that waited [`AHEAD_WAIT_MOST`] for a slot: the
    /// slots went to long tasks, and a short task must not wait behind
    /// them while another daemon could run it.
    fn hand_back_waited(&mut self) {
        let now = tokio::time::Instant::now();
        let mut waited = Vec::new();
        while let Some((at, _)) = self.ahead.front()
            && now.duration_since(*at) >= self.ahead_wait
        {
            let (_, task) = self.ahead.pop_front().expect("a front task");
            waited.push(task);
        }
        if !waited.is_empty() {
            let reason = format!(
                "Handed back unstarted by daemon {}: no slot free within {} ms",
                self.s.id,
                self.ahead_wait.as_millis()
            );
            tracing::debug!(count = waited.len(), "handing back tasks claimed ahead");
            self.hand_back(waited, &reason);
        }
    }

    /// Sends hand-backs of unstarted tasks to the settler (their replies
    /// are awaited by a task in `attempts`, so a stop waits for them).
    fn hand_back(&mut self, tasks: Vec<StartedTask>, reason: &str) {
        let mut replies = Vec::with_capacity(tasks.len());
        for task in tasks {
            if self.forget_buffered(&task) {
                continue;
            }
            let (reply_to, reply) = tokio::sync::oneshot::channel();
            let change = StatusChange::hand_back(task.attempt, reason);
            if self.s.settle_tx.send((change, reply_to)).is_err() {
                tracing::error!("the settler is gone; the task will be rescued");
                return;
            }
            replies.push((task.attempt.task, reply));
        }
        self.attempts.spawn(async move {
            for (task, reply) in replies {
                match reply.await {
                    Ok(Ok(())) | Err(_) => {}
                    Ok(Err(e)) => tracing::debug!(%task, error = %e, "a task claimed ahead was not handed back"),
                }
            }
        });
    }

    /// Takes `task` out of the heartbeat's buffer; `true` when an operator
    /// cancelled it meanwhile (it is CANCELLED already: nothing to run or
    /// hand back).
    fn forget_buffered(&self, task: &StartedTask) -> bool {
        let id = task.attempt.task;
        self.s.buffered.lock().expect("buffer").remove(&id);
        let cancelled = self
            .s
            .cancelled_ahead
            .lock()
            .expect("cancelled ahead")
            .remove(&id);
        if cancelled {
            tracing::info!(task = %id, "a task claimed ahead was cancelled by an operator before it ran");
        }
        cancelled
    }

    /// Claims up to `ready.want` tasks in one transaction, the first
    /// `ready.free` of them started (RUNNING) for the slots free now and the
    /// rest SCHEDULED, then spawns the started ones and runs or buffers the
    /// rest: a task reads RUNNING only once its handler runs.
    async fn claim(&mut self, ready: Ready) -> Pass {
        let s = &self.s;
        let params = ClaimParams::new(s.id, u32::try_from(ready.want).unwrap_or(u32::MAX))
            .with_types(ready.types)
            .starting(u32::try_from(ready.free).unwrap_or(u32::MAX));
        // The claim is never raced or cancelled: a claim dropped mid-flight
        // may still commit, leaving tasks held by no attempt. While it runs,
        // slots that free up take tasks claimed ahead at once (with short
        // tasks they free up many times during one claim's round trip),
        // leaving the `free` slots to the tasks the claim starts.
        let s = s.clone();
        let claim = s.store.task_claim_start(&params);
        tokio::pin!(claim);
        let started = loop {
            tokio::select! {
                biased;
                r = &mut claim => break r,
                () = s.slot_freed.notified(), if !self.ahead.is_empty() => {
                    self.run_ahead(ready.free);
                }
            }
        };
        let started = match started {
            Ok(started) => started,
            Err(e) => return Pass::Failed("claiming tasks", e),
        };
        if started.is_empty() {
            return Pass::Empty;
        }
        let claimed = started.len();
        // Started even if a stop came meanwhile: they get the grace period
        // like every running attempt (handing them back would cost a start).
        let now = tokio::time::Instant::now();
        for task in started {
            if task.status == Status::Running || self.free() > 0 {
                spawn_attempt(&self.s, task, &mut self.attempts);
            } else {
                self.s
                    .buffered
                    .lock()
                    .expect("buffer")
                    .insert(task.attempt.task, task.attempt);
                self.ahead.push_back((now, task));
            }
        }
        Pass::Claimed(claimed)
    }

    /// Runs tasks claimed ahead, oldest first, in the slots that are free
    /// beyond `reserved` (kept for the tasks a claim in flight starts);
    /// returns how many of those slots are still free.
    fn run_ahead(&mut self, reserved: usize) -> usize {
        let mut free = self.free().saturating_sub(reserved);
        while free > 0
            && let Some((_, task)) = self.ahead.pop_front()
        {
            if self.forget_buffered(&task) {
                continue;
            }
            spawn_attempt(&self.s, task, &mut self.attempts);
            free -= 1;
        }
        free
    }

    /// Slots no attempt's handler occupies.
    fn free(&self) -> usize {
        let running = self.s.running.lock().expect("running map").len();
        self.s.config.concurrency.saturating_sub(running)
    }

    /// Stopping: what was claimed ahead never started; it goes back to the
    /// queue in its place, no start spent. Returns every attempt spawned
    /// (and the wait for those hand-backs), for the shutdown to wait on.
    pub(super) fn finish(mut self) -> JoinSet<()> {
        let waiting: Vec<StartedTask> = std::mem::take(&mut self.ahead)
            .into_iter()
            .map(|(_, task)| task)
            .collect();
        if !waiting.is_empty() {
            let reason = format!("Handed back unstarted: daemon {} is stopping", self.s.id);
            self.hand_back(waiting, &reason);
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
                let hand_back = claimer.next_hand_back();
                tokio::select! {
                    () = s.slot_freed.notified() => {}
                    () = sleep_until(hand_back), if hand_back.is_some() => continue,
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
                let hand_back = claimer.next_hand_back();
                // A delayed task due before the next poll: sleep until then
                // (an enqueue of an earlier one ends the wait anyway).
                let due_in = next_due(s).await;
                tokio::select! {
                    () = woken => {}
                    () = s.wake.notified() => {}
                    () = tokio::time::sleep(due_in.unwrap_or_default()), if due_in.is_some() => {}
                    // Tasks claimed ahead run as soon as a slot frees, or
                    // go back to the queue once they waited too long.
                    () = s.slot_freed.notified(), if ahead => {}
                    () = sleep_until(hand_back), if hand_back.is_some() => {}
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

/// Sleeps until `at` (forever for `None`: the caller's guard skips it).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
