//! The daemon's jobs driven one pass at a time, on each engine: no loop
//! runs, so each test chooses the moment every pass sees.

use std::sync::Arc;
use std::time::Duration;

use atp_core::{
    Attempt, DaemonInfo, Handler, NewTask, Status, StatusChange, Store, StoreExt as _, TaskRef,
    TaskType, TypeName, limits,
};
use atp_store::conformance::{DAEMON_A, DAEMON_B, ident, type_name};
use atp_store::testing::TestDb;
use tokio::sync::Semaphore;

use super::claim::{AHEAD_MOST_PER_SLOT, Claimer, PREFETCH_BELOW, Pass, ahead_target};
use super::heartbeat::{Heartbeat, ORPHAN_MESSAGE};
use super::{Daemon, DaemonConfig, Shared, cleanup_once, settle};
use crate::{HandlerResult, Registry, TaskContext};

/// A daemon that is not running, with a claimer and a heartbeat to drive
/// by hand and the settler writing attempts' ends. Its one handler,
/// `app:gate`, runs until the test lets it through the gate (or the
/// attempt is cancelled).
struct Harness<S: Store + Clone> {
    daemon: Daemon<S>,
    claimer: Claimer<S>,
    heartbeat: Heartbeat,
    gate: Arc<Semaphore>,
}

impl<S: Store + Clone> Harness<S> {
    /// Registered like a running daemon (its heartbeat would otherwise
    /// find it taken for dead).
    async fn new(store: S, config: DaemonConfig) -> Self {
        let gate = Arc::new(Semaphore::new(0));
        let mut registry = Registry::empty();
        let g = gate.clone();
        registry.register("app:gate", move |ctx: TaskContext| {
            let g = g.clone();
            async move {
                tokio::select! {
                    permit = g.acquire() => permit.expect("the gate is open").forget(),
                    () = ctx.cancelled() => return Err(crate::HandlerError::new("cancelled")),
                }
                HandlerResult::Ok(())
            }
        });
        registry.register("app:rant", |_ctx: TaskContext| async {
            Err(crate::HandlerError::new(
                "no! ".repeat(limits::MAX_MESSAGE_BYTES),
            ))
        });
        let config = DaemonConfig {
            id: Some(DAEMON_A),
            ..config
        };
        let daemon = Daemon::new(store, registry, config);
        let rx = daemon.shared.settle_rx.lock().unwrap().take().unwrap();
        tokio::spawn(settle::settler_loop(daemon.shared.clone(), rx));
        let claimer = Claimer::new(&daemon.shared);
        let info = daemon.shared.info();
        daemon.shared.store.daemon_register(&info).await.unwrap();
        let heartbeat = Heartbeat::new(info);
        Harness {
            daemon,
            claimer,
            heartbeat,
            gate,
        }
    }

    fn s(&self) -> &Arc<Shared<S>> {
        &self.daemon.shared
    }

    fn store(&self) -> &S {
        &self.s().store
    }

    async fn claim_once(&mut self) -> Pass {
        self.claimer.claim_once().await
    }

    async fn heartbeat_once(&mut self) {
        let s = self.daemon.shared.clone();
        self.heartbeat.heartbeat_once(&s).await;
    }

    /// Lets `n` handlers end and waits until their ends are written.
    async fn let_through(&mut self, n: usize) {
        self.gate.add_permits(n);
        for _ in 0..n {
            self.claimer.join_next().await.expect("an attempt to end");
        }
    }

    /// The context of the attempt running `task`.
    fn running(&self, task: &Attempt) -> TaskContext {
        self.s().running.lock().unwrap()[&task.task].ctx.clone()
    }

    fn running_attempts(&self) -> Vec<Attempt> {
        let running = self.s().running.lock().unwrap();
        running.values().map(|r| r.ctx.attempt()).collect()
    }
}

fn config(concurrency: usize) -> DaemonConfig {
    DaemonConfig {
        concurrency,
        ..DaemonConfig::default()
    }
}

async fn gate_type<S: Store>(s: &S, name: &str) -> TypeName {
    let t = TaskType::new(type_name(name), Handler::new("app:gate").unwrap());
    s.task_type_upsert(&t).await.unwrap();
    t.name
}

async fn enqueue<S: Store>(s: &S, t: &TypeName, id: &str) -> TaskRef {
    s.task_enqueue(NewTask::new(t.clone(), ident(id)))
        .await
        .unwrap();
    TaskRef::Key(t.clone(), ident(id))
}

async fn status<S: Store>(s: &S, t: &TaskRef) -> Status {
    s.task_get(t).await.unwrap().status
}

/// The start-up warning of issue 10: a handler's own `finish` commits
/// (`builtin:sum` ends its task so) while the heartbeat is between listing
/// the running attempts and heartbeating them. The store refuses that
/// heartbeat (the task is no longer live), but nothing was lost: the
/// attempt must be neither warned about nor cancelled.
async fn a_heartbeat_racing_a_handlers_own_end_cancels_nothing(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(2)).await;
    let t = gate_type(h.store(), "gate").await;
    let task = enqueue(h.store(), &t, "1").await;
    assert!(matches!(h.claim_once().await, Pass::Claimed(1)));
    let attempt = h.running_attempts()[0];
    let ctx = h.running(&attempt);
    // The racy moment: the handler's finish is written, its reply not yet
    // back (the context does not know it settled).
    h.store()
        .task_set_status(StatusChange::finish(attempt, "done"))
        .await
        .unwrap();
    assert!(!ctx.settled());
    h.heartbeat_once().await;
    assert!(!ctx.lost(), "the attempt was taken for lost");
    assert!(!ctx.is_cancelled(), "the attempt was cancelled");
    h.let_through(1).await;
    assert_eq!(status(h.store(), &task).await, Status::Finished);
}

/// A handler's context names its holder and when its task entered the
/// queue (a program embedding the daemon measures waits with it).
async fn the_context_tells_the_holder_and_the_enqueue_time(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    let t = gate_type(h.store(), "gate").await;
    let task = enqueue(h.store(), &t, "1").await;
    assert!(matches!(h.claim_once().await, Pass::Claimed(1)));
    let ctx = h.running(&h.running_attempts()[0]);
    assert_eq!(ctx.daemon_id(), DAEMON_A);
    let stored = h.store().task_get(&task).await.unwrap();
    assert_eq!(ctx.enqueued_at(), stored.enqueued_at);
    h.let_through(1).await;
}

/// An attempt that overruns its type's timeout is cancelled and its task
/// goes back to the queue; the log names the start (the task's n-th run),
/// not the attempt (the fencing token).
async fn a_start_that_overruns_its_timeout_is_handed_back_naming_the_start(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    let t =
        TaskType::new(type_name("slow"), Handler::new("app:gate").unwrap()).with_timeout_secs(0.05);
    h.store().task_type_upsert(&t).await.unwrap();
    let task = enqueue(h.store(), &t.name, "1").await;
    assert!(matches!(h.claim_once().await, Pass::Claimed(1)));
    // No permit: the attempt ends by its timeout alone.
    h.claimer.join_next().await.expect("the attempt to end");
    assert_eq!(status(h.store(), &task).await, Status::Accepted);
    let log = h.store().task_log(&task).await.unwrap();
    assert_eq!(
        log.last().unwrap().message,
        format!(
            "Start 1 overran the type's timeout of 0.05 s and was aborted by daemon {DAEMON_A}"
        )
    );
}

/// A handler's error longer than the store takes is cut, so the task
/// still ends FAILED (refused, it would stay held until its timeout).
async fn an_over_long_handler_error_is_cut_to_the_store_limit(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    let t = TaskType::new(type_name("rant"), Handler::new("app:rant").unwrap());
    h.store().task_type_upsert(&t).await.unwrap();
    let task = enqueue(h.store(), &t.name, "1").await;
    assert!(matches!(h.claim_once().await, Pass::Claimed(1)));
    h.claimer.join_next().await.expect("the attempt to end");
    assert_eq!(status(h.store(), &task).await, Status::Failed);
    let log = h.store().task_log(&task).await.unwrap();
    let message = &log.last().unwrap().message;
    assert!(message.starts_with("no! no! ") && message.ends_with('…'));
    assert!(message.len() <= limits::MAX_MESSAGE_BYTES);
}

/// A pass polls its wait for new tasks just before it claims, and not at
/// all when it claims nothing.
async fn a_pass_listens_only_when_it_claims(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    let t = gate_type(h.store(), "gate").await;
    enqueue(h.store(), &t, "1").await;
    let polled = std::sync::atomic::AtomicUsize::new(0);
    let listen = || {
        std::future::poll_fn(|_| {
            polled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::task::Poll::Ready(())
        })
    };
    let (pass, early) = h
        .claimer
        .claim_once_listening(std::pin::pin!(listen()))
        .await;
    assert!(matches!(pass, Pass::Claimed(1)) && early);
    assert_eq!(polled.load(std::sync::atomic::Ordering::SeqCst), 1);
    let (pass, early) = h
        .claimer
        .claim_once_listening(std::pin::pin!(listen()))
        .await;
    assert!(matches!(pass, Pass::Full) && !early);
    assert_eq!(
        polled.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a full pass listened"
    );
    h.let_through(1).await;
}

/// The heartbeat's real job: a task taken from a running attempt (here an
/// operator re-enqueues it) cancels the attempt, whose result is dropped.
async fn a_heartbeat_refused_for_a_taken_task_cancels_its_attempt(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    let t = gate_type(h.store(), "gate").await;
    let task = enqueue(h.store(), &t, "1").await;
    assert!(matches!(h.claim_once().await, Pass::Claimed(1)));
    let ctx = h.running(&h.running_attempts()[0]);
    h.store()
        .task_reenqueue(&task, "operator says again")
        .await
        .unwrap();
    h.heartbeat_once().await;
    assert!(ctx.lost() && ctx.is_cancelled());
    h.let_through(1).await;
    assert_eq!(status(h.store(), &task).await, Status::Accepted);
}

/// A cancel the daemon did not hear (made by another process on SQLite, or
/// while PostgreSQL's listener reconnected: this harness runs no cancel
/// watch) is found by the next heartbeat, which the CANCELLED task
/// refuses: the attempt is stopped as a cancel, and nothing is written.
async fn a_heartbeat_refused_for_a_cancelled_task_stops_its_attempt_as_a_cancel(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    let t = gate_type(h.store(), "gate").await;
    let task = enqueue(h.store(), &t, "1").await;
    assert!(matches!(h.claim_once().await, Pass::Claimed(1)));
    let ctx = h.running(&h.running_attempts()[0]);
    h.store().task_cancel(&task, None).await.unwrap();
    assert!(!ctx.is_cancelled(), "nobody told the attempt yet");
    h.heartbeat_once().await;
    assert!(ctx.lost() && ctx.is_cancelled() && ctx.cancelled_by_operator());
    let log_len = h.store().task_log(&task).await.unwrap().len();
    h.let_through(1).await;
    assert_eq!(status(h.store(), &task).await, Status::Cancelled);
    assert_eq!(h.store().task_log(&task).await.unwrap().len(), log_len);
}

/// A daemon whose record is gone was taken for dead and its tasks rescued:
/// the next heartbeat cancels its attempts and records the daemon again.
async fn a_daemon_taken_for_dead_cancels_its_attempts_and_registers_again(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    let t = gate_type(h.store(), "gate").await;
    enqueue(h.store(), &t, "1").await;
    assert!(matches!(h.claim_once().await, Pass::Claimed(1)));
    let ctx = h.running(&h.running_attempts()[0]);
    h.store().daemon_deregister(DAEMON_A).await.unwrap();
    h.heartbeat_once().await;
    assert!(ctx.lost() && ctx.is_cancelled());
    let daemons = h.store().daemon_list().await.unwrap();
    assert_eq!(daemons.iter().map(|d| d.id).collect::<Vec<_>>(), [DAEMON_A]);
    h.let_through(1).await;
}

/// Heartbeats keep running and claimed-ahead tasks fresh; a task claimed
/// ahead reads SCHEDULED (its start not counted) until its handler runs.
async fn heartbeats_refresh_every_held_task(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    h.claimer.lengthen_ahead_wait_for_test();
    h.s().record_handler_time(Duration::ZERO);
    let t = gate_type(h.store(), "gate").await;
    let first = enqueue(h.store(), &t, "1").await;
    let second = enqueue(h.store(), &t, "2").await;
    assert!(matches!(h.claim_once().await, Pass::Claimed(2)));
    assert_eq!(h.s().buffered.lock().unwrap().len(), 1);
    let before = [
        h.store().task_get(&first).await.unwrap().updated_at,
        h.store().task_get(&second).await.unwrap().updated_at,
    ];
    h.heartbeat_once().await;
    let shown = [(Status::Running, 1), (Status::Scheduled, 0)];
    for ((t, was), (status, starts)) in [&first, &second].into_iter().zip(before).zip(shown) {
        let now = h.store().task_get(t).await.unwrap();
        assert!(now.updated_at > was, "{t:?} was not heartbeated");
        assert_eq!((now.status, now.starts), (status, starts), "{t:?}");
    }
    h.let_through(1).await;
    // The second runs from the buffer once the first's slot is free.
    assert!(matches!(h.claim_once().await, Pass::Empty));
    h.let_through(1).await;
    let done = h.store().task_get(&second).await.unwrap();
    assert_eq!((done.status, done.starts), (Status::Finished, 1));
    assert_eq!(
        statuses(h.store(), &second).await,
        [
            Status::Accepted,
            Status::Scheduled,
            Status::Running,
            Status::Finished
        ]
    );
}

/// The statuses of a task's log, oldest first.
async fn statuses<S: Store>(s: &S, task: &TaskRef) -> Vec<Status> {
    s.task_log(task)
        .await
        .unwrap()
        .iter()
        .map(|r| r.status)
        .collect()
}

/// A task claimed ahead whose slot does not free within
/// [`AHEAD_WAIT_MOST`](super::claim::AHEAD_WAIT_MOST) (the slot's task is long) goes back to the queue,
/// unstarted and in its place, for another daemon; while this daemon's
/// slots run long tasks it claims nothing ahead.
async fn a_task_claimed_ahead_goes_back_in_its_place_when_no_slot_frees(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    h.s().record_handler_time(Duration::ZERO);
    let t = gate_type(h.store(), "gate").await;
    let long = enqueue(h.store(), &t, "1").await;
    let short = enqueue(h.store(), &t, "2").await;
    assert!(matches!(h.claim_once().await, Pass::Claimed(2)));
    let later = enqueue(h.store(), &t, "3").await;
    let before = h.store().task_get(&short).await.unwrap();
    assert_eq!(before.status, Status::Scheduled);
    // Move the daemon's clock past the wait: the tasks ahead and the
    // running attempt are as old as the claim loop's deadline says.
    assert!(h.claimer.next_hand_back().is_some(), "a task waits ahead");
    h.claimer.age_for_test(super::claim::AHEAD_WAIT_MOST);
    h.s().record_handler_time(Duration::ZERO);
    // The slot's attempt has run that long too: nothing more is claimed.
    assert!(matches!(h.claim_once().await, Pass::Full));
    assert!(h.s().buffered.lock().unwrap().is_empty());
    atp_store::testing::eventually(Duration::from_secs(10), "the hand-back", || async {
        let back = status(h.store(), &short).await == Status::Accepted;
        back.then_some(())
    })
    .await;
    let after = h.store().task_get(&short).await.unwrap();
    assert_eq!((after.starts, after.holder), (0, None));
    assert_eq!(after.enqueued_at, before.enqueued_at, "it keeps its place");
    assert_eq!(
        statuses(h.store(), &short).await,
        [Status::Accepted, Status::Scheduled, Status::Accepted]
    );
    // Another daemon takes it before the task enqueued after it.
    let other = h
        .store()
        .task_claim_start(&atp_core::ClaimParams::new(DAEMON_B, 1))
        .await
        .unwrap();
    assert_eq!(other[0].identifier.as_str(), "2");
    assert_eq!(status(h.store(), &later).await, Status::Accepted);
    assert_eq!(status(h.store(), &long).await, Status::Running);
    // The hand-back's wait and the long attempt.
    h.let_through(2).await;
}

/// The guard `long_tasks_are_not_claimed_ahead` names: once handlers are
/// known to take longer than [`PREFETCH_BELOW`], a busy daemon leaves the
/// queue alone (another daemon may be idle); with short ones it claims a
/// batch ahead.
async fn long_tasks_are_not_claimed_ahead(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    h.claimer.lengthen_ahead_wait_for_test();
    let t = gate_type(h.store(), "gate").await;
    let first = enqueue(h.store(), &t, "1").await;
    let second = enqueue(h.store(), &t, "2").await;
    h.s().record_handler_time(PREFETCH_BELOW * 10);
    assert!(matches!(h.claim_once().await, Pass::Claimed(1)));
    assert_eq!(status(h.store(), &first).await, Status::Running);
    // The slot is busy and tasks are long: nothing is claimed ahead.
    assert!(matches!(h.claim_once().await, Pass::Full));
    assert_eq!(status(h.store(), &second).await, Status::Accepted);
    // Short tasks: the next is claimed ahead, and waits, SCHEDULED.
    for _ in 0..32 {
        h.s().record_handler_time(Duration::from_micros(10));
    }
    assert!(matches!(h.claim_once().await, Pass::Claimed(1)));
    assert_eq!(status(h.store(), &second).await, Status::Scheduled);
    assert_eq!(h.running_attempts().len(), 1, "never more than concurrency");
    h.let_through(1).await;
    assert!(matches!(h.claim_once().await, Pass::Empty));
    h.let_through(1).await;
    assert_eq!(status(h.store(), &second).await, Status::Finished);
}

/// Short tasks are claimed ahead in one batch of `ahead_target` (on top of
/// the free slots), and the buffer is refilled only once it is half empty:
/// many small claims would cost a round trip and a commit each.
async fn short_tasks_are_claimed_ahead_in_batches_refilled_at_half(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(2)).await;
    h.claimer.lengthen_ahead_wait_for_test();
    let t = gate_type(h.store(), "gate").await;
    for i in 0..80 {
        enqueue(h.store(), &t, &format!("{i:02}")).await;
    }
    // Every attempt's end folds its real time (the wait at the gate) into
    // the average: keep it short before each pass.
    let short = |h: &Harness<_>| {
        for _ in 0..32 {
            h.s().record_handler_time(Duration::from_micros(10));
        }
    };
    short(&h);
    let target = ahead_target(2, h.s().handler_time());
    assert_eq!(target, 2 * AHEAD_MOST_PER_SLOT);
    let Pass::Claimed(n) = h.claim_once().await else {
        panic!("the first pass claims")
    };
    assert_eq!(n, 2 + target, "both slots and a full buffer ahead");
    assert_eq!(h.s().buffered.lock().unwrap().len(), target);
    // Freed slots take tasks from the buffer; while it is more than half
    // full, nothing more is claimed.
    for _ in 0..target / 2 - 1 {
        h.let_through(1).await;
        short(&h);
        assert!(matches!(h.claim_once().await, Pass::Full));
    }
    assert_eq!(h.s().buffered.lock().unwrap().len(), target / 2 + 1);
    // Half empty: one claim refills it.
    h.let_through(1).await;
    short(&h);
    let Pass::Claimed(n) = h.claim_once().await else {
        panic!("a half-empty buffer is refilled")
    };
    assert_eq!(n, target / 2);
    assert_eq!(h.s().buffered.lock().unwrap().len(), target);
    assert_eq!(h.running_attempts().len(), 2, "never more than concurrency");
    h.let_through(2).await;
}

/// While a claim is in flight (here: held up on PostgreSQL by another
/// session's lock on the `out` counter row it updates), a slot that frees
/// up takes the next task claimed ahead at once instead of waiting for the
/// claim's round trip. Without that, short tasks left slots idle for most
/// of every claim (BENCHMARKS.md, "Claim-ahead").
#[tokio::test]
async fn a_freed_slot_takes_a_task_claimed_ahead_while_a_claim_is_in_flight() {
    let Some(db) = atp_store::testing::PgDb::new().await else {
        return;
    };
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    h.claimer.lengthen_ahead_wait_for_test();
    let t = gate_type(h.store(), "gate").await;
    for i in 0..4 {
        enqueue(h.store(), &t, &format!("a{i}")).await;
    }
    for _ in 0..32 {
        h.s().record_handler_time(Duration::from_micros(10));
    }
    assert!(matches!(h.claim_once().await, Pass::Claimed(4)));
    assert_eq!(h.s().buffered.lock().unwrap().len(), 3);
    enqueue(h.store(), &t, "b").await;
    // Hold up the next claim.
    let raw = db.raw().await;
    raw.batch_execute("BEGIN; SELECT value FROM atp_queue_counter WHERE name = 'out' FOR UPDATE")
        .await
        .unwrap();
    h.let_through(1).await;
    for _ in 0..32 {
        h.s().record_handler_time(Duration::from_micros(10));
    }
    let s = h.s().clone();
    let gate = h.gate.clone();
    {
        let claim = h.claimer.claim_once();
        tokio::pin!(claim);
        // The pass ran one task from the buffer and is now claiming.
        let running_one = |s: &Arc<Shared<_>>| s.running.lock().unwrap().len() == 1;
        let waiting = async {
            atp_store::testing::eventually(Duration::from_secs(10), "the claim to run", || {
                let ran = running_one(&s) && s.buffered.lock().unwrap().len() == 2;
                async move { ran.then_some(()) }
            })
            .await;
            // Its handler ends: the next one leaves the buffer meanwhile.
            gate.add_permits(1);
            atp_store::testing::eventually(
                Duration::from_secs(10),
                "a buffered task to take the freed slot",
                || {
                    let ran = running_one(&s) && s.buffered.lock().unwrap().len() == 1;
                    async move { ran.then_some(()) }
                },
            )
            .await;
        };
        tokio::select! {
            pass = &mut claim => panic!("the claim went through the lock: {pass:?}"),
            () = waiting => {}
        }
        raw.batch_execute("ROLLBACK").await.unwrap();
        assert!(matches!(claim.await, Pass::Claimed(1)));
    }
    h.claimer
        .join_next()
        .await
        .expect("the first attempt to end");
    h.let_through(1).await;
}

/// A task claimed ahead (SCHEDULED, waiting for a slot) whose cancel the
/// daemon hears never runs: the free slot skips it, and nothing is written.
async fn a_task_cancelled_while_claimed_ahead_never_runs(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    h.claimer.lengthen_ahead_wait_for_test();
    let t = gate_type(h.store(), "gate").await;
    enqueue(h.store(), &t, "1").await;
    let second = enqueue(h.store(), &t, "2").await;
    for _ in 0..32 {
        h.s().record_handler_time(Duration::from_micros(10));
    }
    assert!(matches!(h.claim_once().await, Pass::Claimed(2)));
    let ahead = h.store().task_get(&second).await.unwrap().id;
    assert!(h.s().buffered.lock().unwrap().contains_key(&ahead));
    h.store().task_cancel(&second, None).await.unwrap();
    super::cancel::cancelled(h.s(), ahead);
    let logged = h.store().task_log(&second).await.unwrap().len();
    h.let_through(1).await;
    // The free slot skips the cancelled task claimed ahead.
    assert!(matches!(h.claim_once().await, Pass::Empty));
    assert!(h.running_attempts().is_empty(), "nothing runs");
    assert!(h.s().buffered.lock().unwrap().is_empty());
    assert_eq!(status(h.store(), &second).await, Status::Cancelled);
    assert_eq!(h.store().task_log(&second).await.unwrap().len(), logged);
    assert!(h.s().cancelled_ahead.lock().unwrap().is_empty());
}

/// Until a handler has ended, the daemon does not know its tasks are
/// short, and claims nothing ahead; an attempt's end teaches it.
async fn nothing_is_claimed_ahead_before_a_handler_time_is_known(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    let t = gate_type(h.store(), "gate").await;
    enqueue(h.store(), &t, "1").await;
    let second = enqueue(h.store(), &t, "2").await;
    assert!(matches!(h.claim_once().await, Pass::Claimed(1)));
    assert_eq!(h.s().handler_time(), None);
    assert!(matches!(h.claim_once().await, Pass::Full));
    assert_eq!(status(h.store(), &second).await, Status::Accepted);
    h.let_through(1).await;
    assert!(
        h.s().handler_time().is_some(),
        "the attempt's time was not recorded"
    );
}

/// The simple embedding: a type whose handler is registered is claimed
/// with no `DaemonConfig::types`; a type whose handler is not stays queued
/// for another daemon; `types` narrows further.
async fn what_is_claimed_follows_the_registry(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(4)).await;
    let mine = gate_type(h.store(), "mine").await;
    let other = TaskType::new(type_name("other"), Handler::new("app:elsewhere").unwrap());
    h.store().task_type_upsert(&other).await.unwrap();
    let theirs = enqueue(h.store(), &other.name, "x").await;
    let ours = enqueue(h.store(), &mine, "x").await;
    assert!(matches!(h.claim_once().await, Pass::Claimed(1)));
    assert_eq!(status(h.store(), &ours).await, Status::Running);
    assert_eq!(status(h.store(), &theirs).await, Status::Accepted);
    h.let_through(1).await;

    let narrowed = DaemonConfig {
        types: Some(vec![type_name("elsewhere")]),
        ..config(4)
    };
    let mut n = Harness::new(db.store().clone(), narrowed).await;
    enqueue(n.store(), &mine, "y").await;
    assert!(matches!(n.claim_once().await, Pass::NoTypes));
}

/// A task the database says this daemon holds but that it does not run
/// (the reply to a claim was lost) is handed back by the second heartbeat
/// that finds it so, not the first (a claim may be in flight).
async fn a_task_held_but_not_running_is_handed_back_at_the_second_round(db: impl TestDb) {
    let mut h = Harness::new(db.store().clone(), config(1)).await;
    let t = gate_type(h.store(), "gate").await;
    let task = enqueue(h.store(), &t, "o").await;
    let claimed = h
        .store()
        .task_claim(&atp_core::ClaimParams::new(DAEMON_A, 1))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    h.heartbeat_once().await;
    assert_eq!(status(h.store(), &task).await, Status::Scheduled);
    h.heartbeat_once().await;
    assert_eq!(status(h.store(), &task).await, Status::Accepted);
    let log = h.store().task_log(&task).await.unwrap();
    assert_eq!(log.last().unwrap().message, ORPHAN_MESSAGE);
}

/// A dead daemon's tasks are rescued by one clean-up pass, once the store's
/// clock has moved past the silence that makes a daemon dead.
async fn cleanup_once_rescues_a_dead_daemons_tasks(db: impl TestDb) {
    let clock = atp_core::TestClock::new();
    let s = db
        .open(atp_core::StoreOptions {
            clock: clock.clock(),
            ..atp_core::StoreOptions::default()
        })
        .await;
    let t = gate_type(&s, "gate").await;
    let task = enqueue(&s, &t, "1").await;
    let now = time::OffsetDateTime::now_utc();
    let dead = DaemonInfo {
        id: DAEMON_B,
        host: "elsewhere".into(),
        pid: 1,
        started_at: now,
        heartbeat_at: now,
        handlers: vec![],
    };
    s.daemon_register(&dead).await.unwrap();
    s.task_claim(&atp_core::ClaimParams::new(DAEMON_B, 1))
        .await
        .unwrap();
    let dead_after = Duration::from_secs(60);
    let rule = atp_core::DeadRule::silent_for(dead_after.as_secs_f64());
    let report = cleanup_once(&s, rule, 100).await;
    assert_eq!(
        report.dead_daemons, 0,
        "silent for less than {dead_after:?}"
    );
    assert_eq!(status(&s, &task).await, Status::Scheduled);
    clock.advance(dead_after + Duration::from_secs(1));
    let report = cleanup_once(&s, rule, 100).await;
    assert_eq!(report.dead_daemons, 1);
    assert_eq!(report.rescued, 1);
    assert_eq!(status(&s, &task).await, Status::Accepted);
}

atp_store::per_engine_tests! {
    a_heartbeat_racing_a_handlers_own_end_cancels_nothing,
    a_heartbeat_refused_for_a_taken_task_cancels_its_attempt,
    a_heartbeat_refused_for_a_cancelled_task_stops_its_attempt_as_a_cancel,
    heartbeats_refresh_every_held_task,
    a_start_that_overruns_its_timeout_is_handed_back_naming_the_start,
    a_pass_listens_only_when_it_claims,
    an_over_long_handler_error_is_cut_to_the_store_limit,
    a_daemon_taken_for_dead_cancels_its_attempts_and_registers_again,
    the_context_tells_the_holder_and_the_enqueue_time,
    long_tasks_are_not_claimed_ahead,
    short_tasks_are_claimed_ahead_in_batches_refilled_at_half,
    a_task_cancelled_while_claimed_ahead_never_runs,
    a_task_claimed_ahead_goes_back_in_its_place_when_no_slot_frees,
    nothing_is_claimed_ahead_before_a_handler_time_is_known,
    what_is_claimed_follows_the_registry,
    a_task_held_but_not_running_is_handed_back_at_the_second_round,
    cleanup_once_rescues_a_dead_daemons_tasks,
}
