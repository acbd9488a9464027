//! Contract: idle daemons are woken when tasks enter the queue.
//!
//! Every wake-up here comes from another handle on the same database, as a
//! producer in another process (PostgreSQL) or another handle in this one
//! (SQLite, whose signal does not cross processes) would send it.

use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

use atp_core::{DeadRule, Status, StatusChange, Store, StoreExt, StoreOptions, TaskRef};
use tokio::task::JoinHandle;

use super::*;
use crate::testing::TestDb;

/// What the waiters in these tests give as `within`: far longer than any
/// wake-up may take, so a waiter that returns was woken.
const LONG: Duration = Duration::from_secs(10);
/// How long a woken waiter may take to return.
const WOKEN_WITHIN: Duration = Duration::from_secs(5);
/// A waiter on `s` (within [`LONG`]) that has begun, so it is registered,
/// and still waits; it returns the moment it woke. Call [`listening`] on
/// `s` first.
async fn pending_waiter<S: Store + Clone>(s: &S) -> JoinHandle<Instant> {
    let store = s.clone();
    let mut waiter = Box::pin(async move {
        store.wait_for_tasks(LONG).await;
        Instant::now()
    });
    // The first poll begins the call: from then on no wake-up is missed.
    let first = std::future::poll_fn(|cx| Poll::Ready(waiter.as_mut().poll(cx))).await;
    assert!(
        first.is_pending(),
        "wait_for_tasks returned at once with nothing enqueued"
    );
    tokio::spawn(waiter)
}

/// Makes sure `s` listens, so a later wake-up is the one under test: a
/// PostgreSQL handle starts listening at its first wait and then wakes its
/// waiters once (spurious wake-ups are allowed), which is the signal that
/// it listens. SQLite has nothing to start.
async fn listening<S: Store + Clone>(s: &S) {
    if s.engine() == "postgres" {
        tokio::time::timeout(WOKEN_WITHIN, s.wait_for_tasks(LONG))
            .await
            .expect("a new PostgreSQL listener wakes its waiters once it listens");
    }
}

/// Asserts that `waiter` returns long before its `within`; returns how long
/// after `acted` (the moment the waking call began) it woke.
async fn assert_woken(waiter: JoinHandle<Instant>, acted: Instant, what: &str) -> Duration {
    let woke = tokio::time::timeout(WOKEN_WITHIN, waiter)
        .await
        .unwrap_or_else(|_| panic!("{what} did not wake the waiter"))
        .expect("the waiter panicked");
    let latency = woke.saturating_duration_since(acted);
    eprintln!("wake-up latency after {what}: {latency:?}");
    latency
}

/// An enqueue through another handle wakes a waiting daemon long before
/// its `within`.
pub async fn wait_for_tasks_wakes_on_enqueue(db: impl TestDb) {
    let s = db.store();
    listening(s).await;
    let t = register(s, task_type("wake")).await;
    let producer = db.open(StoreOptions::default()).await;

    let waiter = pending_waiter(s).await;
    let acted = Instant::now();
    enqueue(&producer, &t, "one").await;
    assert_woken(waiter, acted, "an enqueue").await;

    let waiter = pending_waiter(s).await;
    let batch = ["two", "three"]
        .map(|id| atp_core::NewTask::new(t.clone(), ident(id)))
        .to_vec();
    let acted = Instant::now();
    producer.task_enqueue_many(batch).await.unwrap();
    assert_woken(waiter, acted, "a batch enqueue").await;
    assert_eq!(s.queue_size().await.unwrap(), 3);
}

/// With nothing enqueued, a waiter returns after `within` (or earlier: a
/// spurious wake-up is allowed), never hangs.
pub async fn wait_for_tasks_times_out_without_work(db: impl TestDb) {
    let s = db.store();
    for _ in 0..3 {
        tokio::time::timeout(
            Duration::from_secs(5),
            s.wait_for_tasks(Duration::from_millis(100)),
        )
        .await
        .expect("wait_for_tasks returns by its `within`");
    }
    tokio::time::timeout(Duration::from_secs(5), s.wait_for_tasks(Duration::ZERO))
        .await
        .expect("a zero `within` returns at once");
}

/// A holder handing a task back to the queue wakes a waiter, and so do an
/// operator's re-enqueue and the rescue of a dead daemon's task; changes
/// that put nothing in the queue need not wake anyone.
pub async fn wait_for_tasks_wakes_on_a_hand_back(db: impl TestDb) {
    let s = db.store();
    listening(s).await;
    let t = register(s, task_type("back").with_max_starts(5)).await;
    let (other, clock) = clocked(&db).await;
    let a = running(&other, &t, "x", DAEMON_A).await;

    let waiter = pending_waiter(s).await;
    let acted = Instant::now();
    let results = other
        .task_set_status_many(&[StatusChange::hand_back(a, "shutting down")])
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_woken(waiter, acted, "a hand-back").await;
    assert_eq!(status_of(s, a.task).await, Status::Accepted);

    // An operator's re-enqueue of a finished task.
    let b = other
        .task_start(claim_one(&other, DAEMON_A).await.attempt)
        .await
        .unwrap();
    other
        .task_set_status(StatusChange::finish(b.attempt, "done"))
        .await
        .unwrap();
    let waiter = pending_waiter(s).await;
    let acted = Instant::now();
    other
        .task_reenqueue(&TaskRef::Id(a.task), "")
        .await
        .unwrap();
    assert_woken(waiter, acted, "a re-enqueue").await;

    // The rescue of a task whose holder stopped heartbeating.
    claim_one(&other, DAEMON_B).await;
    clock.advance(Duration::from_secs(31));
    let waiter = pending_waiter(s).await;
    let acted = Instant::now();
    let reaped = other
        .daemon_reap_dead(DeadRule::silent_for(30.0))
        .await
        .unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(reaped[0].rescued[0].outcome, Status::Accepted);
    assert_woken(waiter, acted, "a rescue").await;
}

/// Resuming a type with queued tasks wakes a waiter (its tasks became
/// claimable, as if just enqueued).
pub async fn wait_for_tasks_wakes_on_a_resume(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("resumed")).await;
    let operator = db.open(StoreOptions::default()).await;
    operator.task_type_set_paused(&t, true).await.unwrap();
    enqueue(&operator, &t, "x").await;
    // Only now does `s` listen: the enqueue's own announcement went out
    // before, so the wake-up below can only come from the resume.
    listening(s).await;

    let waiter = pending_waiter(s).await;
    let acted = Instant::now();
    operator.task_type_set_paused(&t, false).await.unwrap();
    assert_woken(waiter, acted, "a resume").await;
    assert_eq!(claim_one(s, DAEMON_A).await.identifier, ident("x"));
}

/// An operator's bulk re-enqueue wakes a waiter; one that moved nothing
/// need not.
pub async fn wait_for_tasks_wakes_on_a_bulk_reenqueue(db: impl TestDb) {
    let s = db.store();
    listening(s).await;
    let t = register(s, task_type("bulk")).await;
    let other = db.open(StoreOptions::default()).await;
    for id in ["x", "y"] {
        let a = running(&other, &t, id, DAEMON_A).await;
        other
            .task_set_status(StatusChange::fail(a, "boom"))
            .await
            .unwrap();
    }
    let waiter = pending_waiter(s).await;
    let acted = Instant::now();
    let n = other
        .task_reenqueue_all(&atp_core::BulkReenqueue {
            status: Status::Failed,
            task_type: Some(t.clone()),
            message: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_woken(waiter, acted, "a bulk re-enqueue").await;
}
