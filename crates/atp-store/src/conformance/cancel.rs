//! Contract: an operator's cancellation (`Store::task_cancel`) and how the
//! holder hears of it (`Store::task_cancelled_watch`).

use std::time::Duration;

use atp_core::{
    BulkReenqueue, CancelNotice, CancelWatch, Error, Progress, Response, Status, StatusChange,
    Store, StoreExt, Transition, messages,
};

use super::*;
use crate::testing::TestDb;

/// How long a notice may take to arrive (a deadline, not a sleep).
const NOTICE: Duration = Duration::from_secs(10);

/// The next notice naming a task, skipping "missed" ones (a PostgreSQL
/// listener says so once it connects).
async fn next_cancelled(watch: &mut CancelWatch) -> atp_core::TaskId {
    tokio::time::timeout(NOTICE, async {
        loop {
            match watch.next().await {
                Some(CancelNotice::Cancelled(task)) => return task,
                Some(CancelNotice::Missed) => {}
                None => panic!("the watch ended"),
            }
        }
    })
    .await
    .expect("a cancellation notice in time")
}

/// Waits until `watch` hears everything from now on: on PostgreSQL, once
/// its listener's LISTEN took effect, which it tells as a "missed" notice
/// (what was sent before could not be heard); SQLite's signal is ready
/// at once.
pub async fn listening<S: Store>(s: &S, watch: &mut CancelWatch) {
    if s.engine() == "postgres" {
        let first = tokio::time::timeout(NOTICE, watch.next())
            .await
            .expect("the listener to connect");
        assert_eq!(first, Some(CancelNotice::Missed));
    }
}

fn is_cancel_refused(e: &Error, from: Status) -> bool {
    matches!(e, Error::InvalidTransition { source, .. }
        if source.transition == Transition::Cancel && source.from == from)
}

/// A queued task leaves the queue (the counter stays exact), is logged with
/// the operator's words, and no claim ever takes it.
pub async fn cancel_of_a_queued_task_takes_it_out_of_the_queue(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let doomed = enqueue(s, &t, "doomed").await;
    let kept = enqueue(s, &t, "kept").await;
    assert_eq!(s.queue_size().await.unwrap(), 2);

    let cancelled = s
        .task_cancel(&doomed.key(), Some("wrong input"))
        .await
        .unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(cancelled.holder, None);
    assert_eq!(s.queue_size().await.unwrap(), 1);
    assert_queue_consistent(s).await;
    let log = s.task_log(&doomed.key()).await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(
        (last.status, last.message.as_str()),
        (Status::Cancelled, "Cancelled: wrong input")
    );

    let claimed = s.task_claim(&ClaimParams::new(DAEMON_A, 10)).await.unwrap();
    let ids: Vec<_> = claimed.iter().map(|c| c.attempt.task).collect();
    assert_eq!(ids, [kept.id], "only the task left in the queue runs");
    assert_eq!(status_of(s, doomed.id).await, Status::Cancelled);
    let counts = s.task_counts().await.unwrap();
    assert_eq!(counts.status(Status::Cancelled), 1);
}

/// A held task (SCHEDULED, RUNNING, PAUSED) becomes CANCELLED at once, by
/// an operator, whoever holds it; its holder is cleared and every later
/// call of that attempt is stale and changes nothing.
pub async fn cancel_of_a_held_task_fences_out_its_attempt(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    for from in [Status::Scheduled, Status::Running, Status::Paused] {
        let id = format!("held-{from}");
        enqueue(s, &t, &id).await;
        let mut a = claim_one(s, DAEMON_A).await.attempt;
        if from != Status::Scheduled {
            a = s.task_start(a).await.unwrap().attempt;
        }
        if from == Status::Paused {
            s.task_set_status(StatusChange::pause(a, "wait"))
                .await
                .unwrap();
        }
        assert_eq!(status_of(s, a.task).await, from);
        let cancelled = s.task_cancel(&TaskRef::Id(a.task), None).await.unwrap();
        assert_eq!(cancelled.status, Status::Cancelled, "{from}");
        assert_eq!(cancelled.holder, None, "{from}");
        assert_eq!(cancelled.lease, a.lease, "{from}");
        let log_before = log_len(s, a.task).await;
        let last = s.task_log(&TaskRef::Id(a.task)).await.unwrap();
        assert_eq!(last.last().unwrap().message, messages::CANCELLED);

        let stale = |r: atp_core::Result<()>, what: &str| {
            assert!(
                matches!(r, Err(Error::StaleAttempt { .. })),
                "{what} from {from}: {r:?}"
            );
        };
        stale(s.task_heartbeat(a).await, "heartbeat");
        stale(
            s.task_progress(
                a,
                &Progress {
                    percent: Some(50.0),
                    message: "late".into(),
                },
            )
            .await,
            "progress",
        );
        stale(
            s.task_response_put(a, &Response::new("text/plain", b"late".to_vec()))
                .await,
            "response",
        );
        for change in [
            StatusChange::finish(a, "late"),
            StatusChange::finish_unless_terminal(a, "late"),
            StatusChange::fail(a, "late"),
            StatusChange::fail_unless_terminal(a, "late"),
            StatusChange::hand_back(a, "late"),
            StatusChange::pause(a, "late"),
            StatusChange::resume(a, "late"),
            StatusChange::finish(a, "late")
                .with_response(Response::new("text/plain", b"late".to_vec())),
        ] {
            stale(s.task_set_status(change.clone()).await, "a change");
        }
        if from == Status::Scheduled {
            assert!(matches!(
                s.task_start(a).await,
                Err(Error::StaleAttempt { .. })
            ));
        }
        let task = s.task_get(&TaskRef::Id(a.task)).await.unwrap();
        assert_eq!(task.status, Status::Cancelled, "{from}");
        assert_eq!(log_len(s, a.task).await, log_before, "{from}");
        assert_eq!(
            s.task_response_get(&TaskRef::Id(a.task)).await.unwrap(),
            None
        );
    }
    assert_queue_consistent(s).await;
}

/// FINISHED, FAILED and CANCELLED tasks have ended: cancelling one is an
/// invalid transition that changes nothing; a missing task is not found.
pub async fn cancelling_an_ended_task_is_refused_and_changes_nothing(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let mut ended = Vec::new();
    for (id, status) in [("f", Status::Finished), ("x", Status::Failed)] {
        let a = running(s, &t, id, DAEMON_A).await;
        s.task_set_status(change_to(a, status, "end"))
            .await
            .unwrap();
        ended.push((a.task, status));
    }
    let c = enqueue(s, &t, "c").await;
    s.task_cancel(&c.key(), None).await.unwrap();
    ended.push((c.id, Status::Cancelled));
    for (task, status) in ended {
        let before = s.task_log(&TaskRef::Id(task)).await.unwrap();
        let err = s
            .task_cancel(&TaskRef::Id(task), Some("again"))
            .await
            .unwrap_err();
        assert!(is_cancel_refused(&err, status), "{status}: {err:?}");
        assert_eq!(s.task_log(&TaskRef::Id(task)).await.unwrap(), before);
        assert_eq!(status_of(s, task).await, status);
    }
    let missing = TaskRef::Key(t, ident("missing"));
    assert!(matches!(
        s.task_cancel(&missing, None).await,
        Err(Error::TaskNotFound(_))
    ));
    assert_queue_consistent(s).await;
}

/// Re-enqueue works from CANCELLED, one task or every one of a status, and
/// the task then runs like any other; retention retires CANCELLED tasks.
pub async fn a_cancelled_task_is_reenqueued_alone_or_in_bulk(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let a = running(s, &t, "two", DAEMON_A).await;
    let one = enqueue(s, &t, "one").await;
    s.task_cancel(&one.key(), None).await.unwrap();
    s.task_cancel(&TaskRef::Id(a.task), None).await.unwrap();

    let again = s.task_reenqueue(&one.key(), "").await.unwrap();
    assert_eq!((again.status, again.starts), (Status::Accepted, 0));
    assert_queue_consistent(s).await;
    s.task_cancel(&one.key(), None).await.unwrap();
    let moved = s
        .task_reenqueue_all(&BulkReenqueue {
            status: Status::Cancelled,
            task_type: Some(t.clone()),
            message: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(moved, 2);
    assert_eq!(s.queue_size().await.unwrap(), 2);
    assert_queue_consistent(s).await;
    let b = claim_one(s, DAEMON_B).await.attempt;
    s.task_start(b).await.unwrap();
    s.task_set_status(StatusChange::finish(b, "done"))
        .await
        .unwrap();
    assert_eq!(status_of(s, b.task).await, Status::Finished);
}

/// CANCELLED tasks are retired like FINISHED and FAILED ones.
pub async fn cancelled_tasks_are_retired_after_their_retention(db: impl TestDb) {
    let (s, clock) = &clocked(&db).await;
    let t = register(s, task_type("t").with_retention_secs(30.0)).await;
    let a = running(s, &t, "held", DAEMON_A).await;
    let queued = enqueue(s, &t, "queued").await;
    s.task_cancel(&queued.key(), None).await.unwrap();
    s.task_cancel(&TaskRef::Id(a.task), None).await.unwrap();
    assert!(s.task_delete_retired(100).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(31));
    let mut gone: Vec<_> = s
        .task_delete_retired(100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.identifier.to_string())
        .collect();
    gone.sort();
    assert_eq!(gone, ["held", "queued"]);
    assert_eq!(s.task_counts().await.unwrap().total(), 0);
}

/// The holder's watch hears the cancellation of each task it held, and
/// only those: not another holder's, not a queued task's.
pub async fn cancel_tells_the_holder_s_watch(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let mut mine = s.task_cancelled_watch(DAEMON_A);
    let mut theirs = s.task_cancelled_watch(DAEMON_B);
    listening(s, &mut mine).await;
    listening(s, &mut theirs).await;
    // A second handle on the same database tells the first's watches (on
    // SQLite: in this process; on PostgreSQL: through the server).
    let other = db.open(StoreOptions::default()).await;
    let a = running(s, &t, "a", DAEMON_A).await;
    let b = running(s, &t, "b", DAEMON_B).await;
    let queued = enqueue(s, &t, "queued").await;

    other.task_cancel(&queued.key(), None).await.unwrap();
    other.task_cancel(&TaskRef::Id(a.task), None).await.unwrap();
    assert_eq!(next_cancelled(&mut mine).await, a.task);
    other.task_cancel(&TaskRef::Id(b.task), None).await.unwrap();
    // Notices come in commit order: B's first is its own task, so it heard
    // neither A's nor the queued one.
    assert_eq!(next_cancelled(&mut theirs).await, b.task);
}
