//! Contract: retries with back-off. One start budget: a type's max starts
//! counts every start, whatever ended the previous one; a failure with a
//! retry policy (or a handler's own delay) puts the task back in the queue,
//! due after the back-off, until the last start's failure is final.

use std::time::Duration;

use atp_core::store::ClaimParams;
use atp_core::{RetryPolicy, Status, StatusChange, Store, TaskId, TaskRef};

use super::*;
use crate::testing::TestDb;

const POLICY: RetryPolicy = RetryPolicy {
    delay_secs: 10.0,
    max_delay_secs: 3600.0,
};

/// Claims and starts the one due task, if any.
async fn start_due<S: Store>(s: &S) -> Option<Attempt> {
    let mut started = s
        .task_claim_start(&ClaimParams::new(DAEMON_A, 1))
        .await
        .expect("claiming");
    started.pop().map(|t| t.attempt)
}

/// The task's due time minus the time of its last log record (the
/// failure): the back-off the store applied.
async fn backoff<S: Store>(s: &S, task: TaskId) -> Duration {
    let t = s.task_get(&TaskRef::Id(task)).await.unwrap();
    let log = s.task_log(&TaskRef::Id(task)).await.unwrap();
    let failed_at = log.last().unwrap().time;
    (t.due_at - failed_at)
        .try_into()
        .expect("due after the failure")
}

/// A task that fails twice, then succeeds: each failure puts it back due
/// after exactly the policy's delay for that start (doubling, within the
/// jitter), it is not claimed a moment before, and the third start
/// finishes it. The clock is moved; nothing sleeps.
pub async fn a_task_fails_twice_then_succeeds_with_the_policys_gaps(db: impl TestDb) {
    let (s, clock) = clocked(&db).await;
    let t = register(&s, task_type("flaky").with_retry(POLICY)).await;
    assert_eq!(s.task_type_get(&t).await.unwrap().retry, Some(POLICY));
    let task = enqueue(&s, &t, "x").await.id;
    for failed_start in 1..=2u32 {
        let a = start_due(&s).await.expect("due");
        s.task_set_status(StatusChange::fail(a, "boom"))
            .await
            .unwrap();
        let got = s.task_get(&TaskRef::Id(task)).await.unwrap();
        assert_eq!((got.status, got.starts), (Status::Accepted, failed_start));
        let want = POLICY.delay(task.0, failed_start);
        let applied = backoff(&s, task).await;
        assert!(
            applied.abs_diff(want) <= Duration::from_micros(1),
            "start {failed_start}: {applied:?} vs {want:?}"
        );
        let full =
            Duration::from_secs_f64(POLICY.delay_secs * f64::from(1u32 << (failed_start - 1)));
        assert!(want <= full && want >= full.mul_f64(0.75), "{want:?}");
        let log = s.task_log(&TaskRef::Id(task)).await.unwrap();
        let last = &log.last().unwrap().message;
        let next = failed_start + 1;
        assert!(
            last.starts_with(&format!("Failed: boom; start {next} of 3 after ")),
            "{last}"
        );
        assert_queue_consistent(&s).await;
        // Not before its due time (a second's margin: the engines' clocks
        // run on beside the moved one)…
        clock.advance(want.saturating_sub(Duration::from_secs(1)));
        assert!(start_due(&s).await.is_none(), "claimed before its back-off");
        // …and at it.
        clock.advance(Duration::from_secs(1));
    }
    let a = start_due(&s).await.expect("due after the second back-off");
    s.task_set_status(StatusChange::finish(a, "ok"))
        .await
        .unwrap();
    let done = s.task_get(&TaskRef::Id(task)).await.unwrap();
    assert_eq!((done.status, done.starts), (Status::Finished, 3));
}

/// The last start's failure is final, and says so.
pub async fn the_last_starts_failure_is_final(db: impl TestDb) {
    let (s, clock) = clocked(&db).await;
    let t = register(&s, task_type("flaky").with_retry(POLICY).with_max_starts(2)).await;
    let task = enqueue(&s, &t, "x").await.id;
    let a = start_due(&s).await.unwrap();
    s.task_set_status(StatusChange::fail(a, "boom"))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(11));
    let a = start_due(&s).await.unwrap();
    s.task_set_status(StatusChange::fail(a, "boom again"))
        .await
        .unwrap();
    assert_eq!(status_of(&s, task).await, Status::Failed);
    let log = s.task_log(&TaskRef::Id(task)).await.unwrap();
    assert!(
        log.last()
            .unwrap()
            .message
            .starts_with("boom again; all 2 starts used up"),
        "{log:?}"
    );
    assert_queue_consistent(&s).await;
}

/// A permanent failure is not retried, whatever the policy; without a
/// policy a failure is final at once, as in the original.
pub async fn a_permanent_failure_or_no_policy_is_not_retried(db: impl TestDb) {
    let s = db.store();
    let with = register(s, task_type("with").with_retry(POLICY)).await;
    let without = register(s, task_type("without")).await;
    let a = running(s, &with, "bad-input", DAEMON_A).await;
    s.task_set_status(StatusChange::fail_permanently(a, "bad input"))
        .await
        .unwrap();
    assert_eq!(status_of(s, a.task).await, Status::Failed);
    let b = running(s, &without, "plain", DAEMON_A).await;
    s.task_set_status(StatusChange::fail(b, "boom"))
        .await
        .unwrap();
    assert_eq!(status_of(s, b.task).await, Status::Failed);
    assert_eq!(s.queue_size().await.unwrap(), 0);
}

/// An abandonment and a failure spend the same budget: a task abandoned on
/// its first start and failed on its second (of two) is FAILED, not
/// retried.
pub async fn an_abandonment_and_a_failure_spend_the_same_budget(db: impl TestDb) {
    let (s, clock) = clocked(&db).await;
    let t = register(
        &s,
        task_type("flaky")
            .with_retry(POLICY)
            .with_max_starts(2)
            .with_timeout_secs(30.0),
    )
    .await;
    let task = enqueue(&s, &t, "x").await.id;
    start_due(&s).await.unwrap();
    clock.advance(Duration::from_secs(31));
    let rescued = s.task_requeue_abandoned().await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].outcome, Status::Accepted);
    let a = start_due(&s).await.expect("re-queued at once");
    s.task_set_status(StatusChange::fail(a, "boom"))
        .await
        .unwrap();
    let got = s.task_get(&TaskRef::Id(task)).await.unwrap();
    assert_eq!((got.status, got.starts), (Status::Failed, 2));
}

/// A handler may ask to run again after a delay of its own, with or
/// without a policy; a retry's late result is fenced like any other.
pub async fn a_handler_may_ask_to_run_again_after_a_delay(db: impl TestDb) {
    let (s, clock) = clocked(&db).await;
    let t = register(&s, task_type("polite")).await;
    let a = running(&s, &t, "x", DAEMON_A).await;
    s.task_set_status(StatusChange::retry_after(
        a,
        "rate limited",
        Duration::from_secs(120),
    ))
    .await
    .unwrap();
    let log = s.task_log(&TaskRef::Id(a.task)).await.unwrap();
    assert_eq!(
        log.last().unwrap().message,
        "Failed: rate limited; start 2 of 3 after 120 s"
    );
    assert_eq!(backoff(&s, a.task).await, Duration::from_secs(120));
    let late = s.task_set_status(StatusChange::finish(a, "late")).await;
    assert!(
        matches!(late, Err(atp_core::Error::StaleAttempt { .. })),
        "{late:?}"
    );
    clock.advance(Duration::from_secs(119));
    assert!(start_due(&s).await.is_none());
    clock.advance(Duration::from_secs(1));
    assert_eq!(start_due(&s).await.map(|b| b.task), Some(a.task));
}
