//! Contract: the clean-ups.

use std::time::Duration;

use atp_core::{Status, StatusChange, Store, StoreExt, TaskRef, messages};

use super::*;
use crate::testing::TestDb;

/// The timeout and retention of the short-lived types: long enough that no
/// test machine lets it pass on its own, so only the moved clock does.
const SHORT_SECS: f64 = 30.0;
/// How far the clock moves to pass [`SHORT_SECS`].
const PAST_TIMEOUT: Duration = Duration::from_secs(31);

/// Held tasks not updated within their type's timeout go back to the queue,
/// or FAIL once their starts are used up; fresh ones and other types stay.
pub async fn abandoned_tasks_are_requeued_or_failed(db: impl TestDb) {
    let (s, clock) = &clocked(&db).await;
    let short = register(
        s,
        task_type("short")
            .with_timeout_secs(SHORT_SECS)
            .with_max_starts(2),
    )
    .await;
    let long = register(s, task_type("long")).await;
    let scheduled = {
        enqueue(s, &short, "scheduled").await;
        claim_one(s, DAEMON_A).await.attempt
    };
    let once = running(s, &short, "once", DAEMON_A).await;
    let paused = running(s, &short, "paused", DAEMON_A).await;
    s.task_set_status(StatusChange::pause(paused, "wait"))
        .await
        .unwrap();
    let safe = running(s, &long, "long", DAEMON_A).await;
    let finished = running(s, &short, "finished", DAEMON_A).await;
    s.task_set_status(StatusChange::finish(finished, "ok"))
        .await
        .unwrap();

    clock.advance(PAST_TIMEOUT);
    let mut rescued = s.task_requeue_abandoned().await.unwrap();
    rescued.sort_by_key(|r| r.id);
    let ids: Vec<_> = rescued.iter().map(|r| r.id).collect();
    assert_eq!(ids, [scheduled.task, once.task, paused.task]);
    assert!(rescued.iter().all(|r| r.outcome == Status::Accepted));
    assert_eq!(status_of(s, safe.task).await, Status::Running);
    assert_eq!(status_of(s, finished.task).await, Status::Finished);
    let log = s.task_log(&TaskRef::Id(once.task)).await.unwrap();
    assert_eq!(
        log.last().unwrap().message,
        messages::abandoned_requeued(SHORT_SECS, 1, 2)
    );
    assert_eq!(
        s.task_get(&TaskRef::Id(once.task)).await.unwrap().holder,
        None
    );
    assert_eq!(s.queue_size().await.unwrap(), 3);
    assert!(
        s.task_requeue_abandoned().await.unwrap().is_empty(),
        "a second pass finds nothing"
    );

    // Drain: each task starts again; "once" reaches its 2nd start and, when
    // abandoned again, FAILS instead of looping.
    let claimed = s
        .task_claim(&atp_core::ClaimParams::new(DAEMON_B, 10))
        .await
        .unwrap();
    for c in &claimed {
        s.task_start(c.attempt).await.unwrap();
    }
    clock.advance(PAST_TIMEOUT);
    let rescued = s.task_requeue_abandoned().await.unwrap();
    let once_now = rescued.iter().find(|r| r.id == once.task).unwrap();
    assert_eq!((once_now.outcome, once_now.starts), (Status::Failed, 2));
    let task = s.task_get(&TaskRef::Id(once.task)).await.unwrap();
    assert_eq!((task.status, task.starts), (Status::Failed, 2));
    let last = s.task_log(&task.key()).await.unwrap().pop().unwrap();
    assert_eq!(last.message, messages::abandoned_failed(SHORT_SECS, 2));
    assert!(last.message.contains("max starts"));
    // The late finish of the rescued attempt is refused.
    assert!(matches!(
        s.task_set_status(StatusChange::finish(once, "late")).await,
        Err(atp_core::Error::StaleAttempt { .. })
    ));
    assert_queue_consistent(s).await;
}

/// A task whose holder heartbeats is never taken for abandoned.
pub async fn heartbeat_keeps_a_long_task_from_being_abandoned(db: impl TestDb) {
    let (s, clock) = &clocked(&db).await;
    let t = register(s, task_type("t").with_timeout_secs(SHORT_SECS)).await;
    let beating = running(s, &t, "beating", DAEMON_A).await;
    let silent = running(s, &t, "silent", DAEMON_A).await;
    // Six quarters of the timeout pass, with a heartbeat after each.
    for _ in 0..6 {
        clock.advance(Duration::from_secs_f64(SHORT_SECS / 4.0));
        s.task_heartbeat(beating).await.unwrap();
    }
    let rescued = s.task_requeue_abandoned().await.unwrap();
    let ids: Vec<_> = rescued.iter().map(|r| r.id).collect();
    assert_eq!(ids, [silent.task]);
    assert_eq!(status_of(s, beating.task).await, Status::Running);
}

/// FINISHED and FAILED tasks older than a positive retention are deleted
/// (at most `limit` per call); others stay.
pub async fn retired_tasks_are_deleted_after_their_retention(db: impl TestDb) {
    let (s, clock) = &clocked(&db).await;
    let brief = register(s, task_type("brief").with_retention_secs(SHORT_SECS)).await;
    let forever = register(s, task_type("forever").with_retention_secs(0.0)).await;
    let mut ended = Vec::new();
    for (t, id, status) in [
        (&brief, "f1", Status::Finished),
        (&brief, "f2", Status::Failed),
        (&brief, "f3", Status::Finished),
        (&forever, "kept", Status::Finished),
    ] {
        let a = running(s, t, id, DAEMON_A).await;
        s.task_set_status(change_to(a, status, "end"))
            .await
            .unwrap();
        ended.push(a.task);
    }
    let busy = running(s, &brief, "busy", DAEMON_A).await;
    enqueue(s, &brief, "queued").await;
    clock.advance(PAST_TIMEOUT);
    let young = running(s, &brief, "young", DAEMON_A).await;
    s.task_set_status(StatusChange::finish(young, "end"))
        .await
        .unwrap();

    let first = s.task_delete_retired(2).await.unwrap();
    assert_eq!(first.len(), 2);
    let second = s.task_delete_retired(100).await.unwrap();
    assert_eq!(second.len(), 1);
    let mut gone: Vec<_> = first
        .iter()
        .chain(&second)
        .map(|r| r.identifier.to_string())
        .collect();
    gone.sort();
    assert_eq!(gone, ["f1", "f2", "f3"]);
    assert!(first.iter().chain(&second).all(|r| r.task_type == brief));
    assert!(s.task_delete_retired(100).await.unwrap().is_empty());
    for kept in [ended[3], busy.task, young.task] {
        assert!(s.task_get(&TaskRef::Id(kept)).await.is_ok());
    }
    assert_eq!(s.task_counts().await.unwrap().total(), 4);
    assert_queue_consistent(s).await;
}

/// A rescue that FAILs a task (its starts used up) takes it from its
/// attempt like one that re-enqueues it: every later change, heartbeat,
/// progress or response of that attempt is stale and changes nothing, and
/// the task keeps no holder. Found by the model-based test: the late
/// attempt still counted as the one that ended the task, so its response
/// was stored and its "finish unless terminal" passed.
pub async fn a_rescue_that_fails_a_task_fences_out_its_attempt(db: impl TestDb) {
    let (s, clock) = &clocked(&db).await;
    let t = register(
        s,
        task_type("once")
            .with_timeout_secs(SHORT_SECS)
            .with_max_starts(1),
    )
    .await;
    let abandoned = running(s, &t, "abandoned", DAEMON_A).await;
    let orphaned = running(s, &t, "orphaned", DAEMON_B).await;
    clock.advance(PAST_TIMEOUT);
    let rescued = s.task_requeue_abandoned().await.unwrap();
    assert_eq!(rescued.len(), 2);
    assert!(rescued.iter().all(|r| r.outcome == Status::Failed));
    for a in [abandoned, orphaned] {
        let task = s.task_get(&TaskRef::Id(a.task)).await.unwrap();
        assert_eq!((task.status, task.holder), (Status::Failed, None));
        let log = log_len(s, a.task).await;
        let late = [
            s.task_set_status(StatusChange::finish(a, "late")).await,
            s.task_set_status(StatusChange::finish_unless_terminal(a, "late"))
                .await,
            s.task_set_status(StatusChange::fail_unless_terminal(a, "late"))
                .await,
            s.task_heartbeat(a).await,
            s.task_response_put(a, &atp_core::Response::new("text/plain", "late"))
                .await,
        ];
        for r in late {
            assert!(
                matches!(r, Err(atp_core::Error::StaleAttempt { .. })),
                "{r:?}"
            );
        }
        assert_eq!(
            s.task_response_get(&TaskRef::Id(a.task)).await.unwrap(),
            None
        );
        assert_eq!(log_len(s, a.task).await, log, "nothing was logged");
        assert_eq!(status_of(s, a.task).await, Status::Failed);
    }
    // The same through a dead daemon's rescue.
    let u = register(s, task_type("dead").with_max_starts(1)).await;
    let gone = running(s, &u, "gone", DAEMON_A).await;
    clock.advance(Duration::from_secs(31));
    let reaped = s
        .daemon_reap_dead(atp_core::DeadRule::silent_for(30.0))
        .await
        .unwrap();
    let outcome: Vec<_> = reaped
        .iter()
        .flat_map(|d| &d.rescued)
        .map(|r| (r.id, r.outcome))
        .collect();
    assert_eq!(outcome, [(gone.task, Status::Failed)]);
    assert_eq!(
        s.task_get(&TaskRef::Id(gone.task)).await.unwrap().holder,
        None
    );
    assert!(matches!(
        s.task_set_status(StatusChange::finish_unless_terminal(gone, "late"))
            .await,
        Err(atp_core::Error::StaleAttempt { .. })
    ));
    assert_queue_consistent(s).await;
}
