//! Contract: delayed tasks and priorities. Queued tasks run by priority
//! (higher first), then due time, then enqueue time; a delayed task is
//! queued (and counted) at once but claimed only from its due time on.

use std::time::Duration;

use atp_core::store::ClaimParams;
use atp_core::{Due, Error, NewTask, Status, Store, StoreOptions};

use super::*;
use crate::testing::TestDb;

/// Enqueues `id` of `t` with `priority` (none: the type's).
async fn with_priority<S: Store>(s: &S, t: &TypeName, id: &str, priority: Option<i32>) -> Task {
    let mut new = NewTask::new(t.clone(), ident(id));
    new.priority = priority;
    s.task_enqueue(new).await.expect("enqueueing")
}

/// Enqueues `id` of `t`, due as `due` says.
async fn delayed<S: Store>(s: &S, t: &TypeName, id: &str, due: Due) -> Task {
    s.task_enqueue(NewTask::new(t.clone(), ident(id)).with_due(due))
        .await
        .expect("enqueueing")
}

/// A delayed task is ACCEPTED with its due time from the enqueue on, but no
/// claim takes it before that time; from then on one does. (The clock is
/// moved, and real time passes beside it, so "before" keeps a margin of a
/// second; SQLite's promotion is also tested at the exact microsecond in
/// `sqlite/due.rs`.)
pub async fn a_delayed_task_is_not_claimed_before_its_due_time(db: impl TestDb) {
    let (s, clock) = clocked(&db).await;
    let t = register(&s, task_type("t")).await;
    let task = delayed(&s, &t, "later", Due::After(Duration::from_secs(3600))).await;
    assert_eq!(task.status, Status::Accepted);
    assert_eq!(task.due_at - task.enqueued_at, time::Duration::hours(1));
    let stored = s.task_get(&task.key()).await.unwrap();
    assert_eq!((stored.due_at, stored.priority), (task.due_at, 0));
    assert_eq!(s.queue_size().await.unwrap(), 1, "queued from the start");

    assert!(claimed(&s, ClaimParams::new(DAEMON_A, 10)).await.is_empty());
    clock.advance(Duration::from_secs(3599));
    assert!(claimed(&s, ClaimParams::new(DAEMON_A, 10)).await.is_empty());
    assert!(
        s.task_claim_start(&ClaimParams::new(DAEMON_A, 10).with_types(vec![t.clone()]))
            .await
            .unwrap()
            .is_empty(),
        "a restricted claim-and-start waits too"
    );
    assert_eq!(status_of(&s, task.id).await, Status::Accepted);
    clock.advance(Duration::from_secs(1));
    assert_eq!(claimed(&s, ClaimParams::new(DAEMON_A, 10)).await, ["later"]);
    assert_queue_consistent(&s).await;
}

/// Every claim path honours due times: plain and restricted, claim and
/// claim-and-start.
pub async fn every_claim_path_waits_for_the_due_time(db: impl TestDb) {
    let (s, clock) = clocked(&db).await;
    let t = register(&s, task_type("t")).await;
    for (i, _) in (0..4).enumerate() {
        delayed(
            &s,
            &t,
            &format!("d{i}"),
            Due::After(Duration::from_secs(60)),
        )
        .await;
    }
    let plain = || ClaimParams::new(DAEMON_A, 1);
    let only = || ClaimParams::new(DAEMON_A, 1).with_types(vec![t.clone()]);
    assert!(s.task_claim(&plain()).await.unwrap().is_empty());
    assert!(s.task_claim(&only()).await.unwrap().is_empty());
    assert!(s.task_claim_start(&plain()).await.unwrap().is_empty());
    assert!(s.task_claim_start(&only()).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(61));
    assert_eq!(s.task_claim(&plain()).await.unwrap().len(), 1);
    assert_eq!(s.task_claim(&only()).await.unwrap().len(), 1);
    assert_eq!(s.task_claim_start(&plain()).await.unwrap().len(), 1);
    assert_eq!(s.task_claim_start(&only()).await.unwrap().len(), 1);
}

/// Due tasks run in order of due time, then enqueue time: a due time in the
/// past runs first, a task without one is due at its enqueue, ties go to
/// the earlier enqueue.
pub async fn due_tasks_run_in_order_of_due_time_then_enqueue_time(db: impl TestDb) {
    let (s, clock) = clocked(&db).await;
    let t = register(&s, task_type("t")).await;
    let now = enqueue(&s, &t, "probe").await.enqueued_at;
    s.task_delete(&TaskRef::Key(t.clone(), ident("probe")))
        .await
        .unwrap();
    let at = |secs: i64| Due::At(now + time::Duration::seconds(secs));
    delayed(&s, &t, "plus-30", at(30)).await;
    delayed(&s, &t, "plus-10", Due::After(Duration::from_secs(10))).await;
    delayed(&s, &t, "plus-20-first", at(20)).await;
    enqueue(&s, &t, "now").await;
    delayed(&s, &t, "plus-20-second", at(20)).await;
    delayed(&s, &t, "an-hour-ago", at(-3600)).await;
    // Nothing due yet but the task without a due time and the one due in
    // the past, in due order.
    assert_eq!(
        claimed(&s, ClaimParams::new(DAEMON_A, 10)).await,
        ["an-hour-ago", "now"]
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        claimed(&s, ClaimParams::new(DAEMON_A, 10)).await,
        ["plus-10", "plus-20-first", "plus-20-second", "plus-30"]
    );
}

/// Delayed tasks are queued tasks: they count towards the queue limit, and
/// deleting one frees its place.
pub async fn delayed_tasks_count_towards_the_queue_limit(db: impl TestDb) {
    let s = db
        .open(StoreOptions {
            max_queue_size: 2,
            ..StoreOptions::default()
        })
        .await;
    let t = register(&s, task_type("t")).await;
    let later = delayed(&s, &t, "a", Due::After(Duration::from_secs(600))).await;
    enqueue(&s, &t, "b").await;
    let err = s
        .task_enqueue(
            NewTask::new(t.clone(), ident("c")).with_due(Due::After(Duration::from_secs(1))),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::QueueFull { limit: 2 }), "{err:?}");
    s.task_delete(&later.key()).await.unwrap();
    enqueue(&s, &t, "c").await;
    assert_queue_consistent(&s).await;
}

/// A delay beyond the limit or a due time outside the representable years
/// is refused, and nothing is stored.
pub async fn an_absurd_due_time_is_refused(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let far = Due::After(Due::MAX_DELAY + Duration::from_secs(1));
    let err = s
        .task_enqueue(NewTask::new(t.clone(), ident("far")).with_due(far))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let ancient = Due::At(time::macros::datetime!(1900-01-01 00:00 UTC));
    let err = s
        .task_enqueue(NewTask::new(t.clone(), ident("old")).with_due(ancient))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert_eq!(s.queue_size().await.unwrap(), 0);
}

/// An idle daemon's sleep: how long until the earliest delayed task is due
/// (none: `None`; already due: zero), on the store's clock.
pub async fn next_due_reports_the_earliest_delayed_task(db: impl TestDb) {
    let (s, clock) = clocked(&db).await;
    let t = register(&s, task_type("t")).await;
    assert_eq!(s.task_next_due().await.unwrap(), None);
    enqueue(&s, &t, "now").await;
    assert_eq!(s.task_next_due().await.unwrap(), None, "not delayed");
    delayed(&s, &t, "in-2h", Due::After(Duration::from_secs(7200))).await;
    delayed(&s, &t, "in-1h", Due::After(Duration::from_secs(3600))).await;
    let next = s.task_next_due().await.unwrap().expect("a delayed task");
    assert!(
        next <= Duration::from_secs(3600) && next > Duration::from_secs(3590),
        "{next:?}"
    );
    clock.advance(Duration::from_secs(3601));
    assert_eq!(s.task_next_due().await.unwrap(), Some(Duration::ZERO));
    assert_eq!(
        claimed(&s, ClaimParams::new(DAEMON_A, 10)).await,
        ["now", "in-1h"]
    );
    let next = s.task_next_due().await.unwrap().expect("one left");
    assert!(next <= Duration::from_secs(3600), "{next:?}");
}

/// Higher priorities run first, FIFO within a priority, on every claim
/// path; a task without a priority takes its type's default.
pub async fn higher_priorities_run_first_fifo_within_a_priority(db: impl TestDb) {
    let s = db.store();
    let plain = register(s, task_type("plain")).await;
    let urgent_type = register(s, task_type("urgent").with_priority(3)).await;
    assert_eq!(s.task_type_get(&urgent_type).await.unwrap().priority, 3);
    with_priority(s, &plain, "p0-a", None).await;
    with_priority(s, &plain, "p5-a", Some(5)).await;
    let by_type = with_priority(s, &urgent_type, "type-3", None).await;
    assert_eq!(by_type.priority, 3, "the type's default");
    with_priority(s, &plain, "p0-b", Some(0)).await;
    with_priority(s, &plain, "p5-b", Some(5)).await;
    with_priority(s, &plain, "minus-1", Some(-1)).await;
    with_priority(s, &urgent_type, "type-but-0", Some(0)).await;
    let expected = [
        "p5-a",
        "p5-b",
        "type-3",
        "p0-a",
        "p0-b",
        "type-but-0",
        "minus-1",
    ];
    // One at a time through the restricted path, then all at once through
    // the plain one after a re-enqueue of everything.
    let mut one_by_one = Vec::new();
    let both = vec![plain.clone(), urgent_type.clone()];
    for _ in 0..expected.len() {
        let params = ClaimParams::new(DAEMON_A, 1).with_types(both.clone());
        one_by_one.extend(claimed(s, params).await);
    }
    assert_eq!(one_by_one, expected);
    let all = s
        .task_reenqueue_all(&atp_core::BulkReenqueue {
            status: Status::Scheduled,
            task_type: None,
            message: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(all, expected.len() as u64);
    // A re-enqueue keeps priorities; the bulk one re-enters them in id
    // order, so the order within a priority is the enqueue order again.
    let started: Vec<String> = s
        .task_claim_start(&ClaimParams::new(DAEMON_A, 10))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.identifier.to_string())
        .collect();
    assert_eq!(started, expected);
}

/// Sixteen claimers at once, each taking three, with fifty urgent tasks
/// queued behind fifty ordinary ones: every task claimed is urgent (the
/// others' locked rows are skipped, never a priority).
pub async fn priorities_hold_under_sixteen_concurrent_claimers(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let batch = |prefix: &'static str, priority: i32| {
        (0..50)
            .map(|i| {
                NewTask::new(t.clone(), ident(&format!("{prefix}{i}"))).with_priority(priority)
            })
            .collect::<Vec<_>>()
    };
    s.task_enqueue_many(batch("low", 0)).await.unwrap();
    s.task_enqueue_many(batch("high", 9)).await.unwrap();
    // Every claimer waits at the barrier so that all sixteen claim at once.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let mut claimers = Vec::new();
    for i in 0..16u64 {
        let (s, start) = (s.clone(), start.clone());
        claimers.push(tokio::spawn(async move {
            start.wait().await;
            s.task_claim(&ClaimParams::new(DaemonId(0xC000 + i), 3))
                .await
                .expect("claiming")
        }));
    }
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.expect("a claimer panicked"));
    }
    assert_eq!(claimed.len(), 48);
    assert!(
        claimed
            .iter()
            .all(|c| c.identifier.as_str().starts_with("high")),
        "{claimed:?}"
    );
    // What is left: the last two urgent ones, then the others in FIFO order.
    let rest = claimed_ids(s, 5).await;
    assert!(
        rest[..2].iter().all(|id| id.starts_with("high")),
        "{rest:?}"
    );
    assert_eq!(rest[2..], ["low0", "low1", "low2"]);
}

async fn claimed_ids<S: Store>(s: &S, n: u32) -> Vec<String> {
    claimed(s, ClaimParams::new(DAEMON_B, n)).await
}

/// A delayed task can be cancelled while it waits: it leaves the queue at
/// once, is no longer "next due", and never runs, not even once its due
/// time has passed.
pub async fn a_cancelled_delayed_task_never_runs(db: impl TestDb) {
    let (s, clock) = clocked(&db).await;
    let t = register(&s, task_type("t")).await;
    let task = delayed(&s, &t, "later", Due::After(Duration::from_secs(60))).await;
    let cancelled = s
        .task_cancel(&task.key(), Some("not needed"))
        .await
        .unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(s.queue_size().await.unwrap(), 0);
    assert_eq!(s.task_next_due().await.unwrap(), None);
    clock.advance(Duration::from_secs(61));
    assert!(claimed(&s, ClaimParams::new(DAEMON_A, 10)).await.is_empty());
    assert_eq!(status_of(&s, task.id).await, Status::Cancelled);
    assert_queue_consistent(&s).await;
}

/// A started task carries its due time, so that pick-up latency is
/// measured from when it could run, not from an enqueue long before (both
/// start paths).
pub async fn a_started_delayed_task_is_ready_from_its_due_time(db: impl TestDb) {
    let (s, clock) = clocked(&db).await;
    let t = register(&s, task_type("t")).await;
    let a = delayed(&s, &t, "a", Due::After(Duration::from_secs(30))).await;
    let b = delayed(&s, &t, "b", Due::After(Duration::from_secs(30))).await;
    let now = enqueue(&s, &t, "now").await;
    clock.advance(Duration::from_secs(31));
    let started = s
        .task_claim_start(&ClaimParams::new(DAEMON_A, 2))
        .await
        .unwrap();
    assert_eq!(started[0].identifier.as_str(), "now");
    assert_eq!(started[0].ready_at(), now.enqueued_at);
    assert_eq!(
        (started[1].due_at, started[1].ready_at()),
        (a.due_at, a.due_at)
    );
    let claimed = s.task_claim(&ClaimParams::new(DAEMON_A, 1)).await.unwrap();
    let attempts: Vec<_> = claimed.iter().map(|c| c.attempt).collect();
    let started = s.task_start_many(&attempts).await.unwrap();
    let b_started = started.into_iter().next().unwrap().unwrap();
    assert_eq!(
        (b_started.due_at, b_started.enqueued_at),
        (b.due_at, b.enqueued_at)
    );
    assert_eq!(b_started.ready_at(), b.due_at);
}
