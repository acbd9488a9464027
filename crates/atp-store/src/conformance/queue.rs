//! Contract: every change a holder makes (status changes, heartbeats,
//! progress, responses), each fenced by its attempt.

use atp_core::{
    Attempt, Error, Progress, Response, Status, StatusChange, Store, StoreExt, TaskRef,
};

use super::*;
use crate::testing::TestDb;

/// Puts a fresh task in `status` (held by DAEMON_A) and returns its attempt.
async fn task_in<S: Store>(s: &S, t: &atp_core::TypeName, id: &str, status: Status) -> Attempt {
    enqueue(s, t, id).await;
    let claimed = claim_one(s, DAEMON_A).await;
    let a = claimed.attempt;
    if status == Status::Scheduled {
        return a;
    }
    s.task_start(a).await.unwrap();
    match status {
        Status::Running => {}
        Status::Paused | Status::Finished | Status::Failed => {
            s.task_set_status(change_to(a, status, "setup"))
                .await
                .unwrap();
        }
        other => panic!("cannot set up a task in {other}"),
    }
    a
}

/// Every (held or final status) × (status a holder may ask for) pair is
/// allowed exactly when the transition table says so; a refused change
/// leaves status and log as they were.
pub async fn holder_changes_follow_the_transition_table(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("table").with_max_starts(10)).await;
    let sources = [
        Status::Scheduled,
        Status::Running,
        Status::Paused,
        Status::Finished,
        Status::Failed,
    ];
    let targets = [
        Status::Running,
        Status::Paused,
        Status::Finished,
        Status::Failed,
        Status::Accepted,
    ];
    let mut n = 0;
    for from in sources {
        for to in targets {
            n += 1;
            let a = task_in(s, &t, &format!("{from}-{to}-{n}"), from).await;
            let log_before = log_len(s, a.task).await;
            let result = s.task_set_status(change_to(a, to, "by the test")).await;
            let legal = match to {
                Status::Running => from == Status::Paused,
                Status::Paused => from == Status::Running,
                Status::Finished | Status::Failed | Status::Accepted => from.is_held(),
                _ => unreachable!(),
            };
            if legal {
                result.unwrap_or_else(|e| panic!("{from} -> {to} refused: {e}"));
                assert_eq!(status_of(s, a.task).await, to, "{from} -> {to}");
                let log = s.task_log(&TaskRef::Id(a.task)).await.unwrap();
                assert_eq!(log.len(), log_before + 1);
                assert_eq!(
                    (
                        log.last().unwrap().status,
                        log.last().unwrap().message.as_str()
                    ),
                    (to, "by the test")
                );
            } else {
                let err = result.expect_err(&format!("{from} -> {to} allowed"));
                assert!(
                    matches!(err, Error::InvalidTransition { .. }),
                    "{from} -> {to}: {err:?}"
                );
                assert_eq!(
                    status_of(s, a.task).await,
                    from,
                    "{from} -> {to} changed the status"
                );
                assert_eq!(log_len(s, a.task).await, log_before);
            }
        }
    }
    assert_queue_consistent(s).await;
}

/// A holder handing a task back re-enqueues it while it has starts left,
/// and FAILs it (saying why) once they are used up.
pub async fn release_requeues_or_fails_at_max_starts(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("rel").with_max_starts(2)).await;
    let a = running(s, &t, "x", DAEMON_A).await;
    s.task_set_status(StatusChange::hand_back(a, "shutting down"))
        .await
        .unwrap();
    let task = s.task_get(&TaskRef::Id(a.task)).await.unwrap();
    assert_eq!(
        (task.status, task.holder, task.starts),
        (Status::Accepted, None, 1)
    );
    assert_eq!(s.queue_size().await.unwrap(), 1);

    let b = s
        .task_start(claim_one(s, DAEMON_B).await.attempt)
        .await
        .unwrap();
    assert_eq!(b.start, 2);
    s.task_set_status(StatusChange::hand_back(b.attempt, "shutting down"))
        .await
        .unwrap();
    let task = s.task_get(&TaskRef::Id(a.task)).await.unwrap();
    assert_eq!(task.status, Status::Failed);
    let last = s.task_log(&task.key()).await.unwrap().pop().unwrap();
    assert_eq!(last.status, Status::Failed);
    assert!(
        last.message.contains("shutting down") && last.message.contains("max starts"),
        "{}",
        last.message
    );
    assert_eq!(s.queue_size().await.unwrap(), 0);

    // Claimed but never started: handing back costs no start.
    let c = {
        enqueue(s, &t, "y").await;
        claim_one(s, DAEMON_A).await.attempt
    };
    s.task_set_status(StatusChange::hand_back(c, "not started"))
        .await
        .unwrap();
    let y = s.task_get(&TaskRef::Id(c.task)).await.unwrap();
    assert_eq!((y.status, y.starts), (Status::Accepted, 0));
    assert_queue_consistent(s).await;
}

/// "Finish unless terminal" finishes a running task but leaves a task its
/// handler already failed as FAILED, without a new log record.
pub async fn finish_unless_terminal_keeps_a_final_status(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let a = running(s, &t, "ran", DAEMON_A).await;
    s.task_set_status(StatusChange::finish_unless_terminal(
        a,
        "success if not finished",
    ))
    .await
    .unwrap();
    assert_eq!(status_of(s, a.task).await, Status::Finished);

    let b = running(s, &t, "failed", DAEMON_A).await;
    s.task_set_status(StatusChange::fail(b, "handler said no"))
        .await
        .unwrap();
    let before = log_len(s, b.task).await;
    s.task_set_status(StatusChange::finish_unless_terminal(
        b,
        "success if not finished",
    ))
    .await
    .unwrap();
    assert_eq!(status_of(s, b.task).await, Status::Failed);
    assert_eq!(log_len(s, b.task).await, before);
    // Without the flag, finishing a final task is an illegal transition.
    assert!(matches!(
        s.task_set_status(StatusChange::finish(b, "again")).await,
        Err(Error::InvalidTransition { .. })
    ));
}

/// After an operator re-enqueue, every change from the old attempt
/// (finish, heartbeat, progress, response) is stale and changes nothing.
pub async fn stale_attempt_changes_nothing_after_a_reenqueue(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let old = running(s, &t, "x", DAEMON_A).await;
    s.task_reenqueue(&TaskRef::Id(old.task), "operator")
        .await
        .unwrap();
    let before = s.task_get(&TaskRef::Id(old.task)).await.unwrap();
    let log_before = log_len(s, old.task).await;

    let is_stale = |e: &Error| matches!(e, Error::StaleAttempt { task, lease, .. } if *task == old.task && *lease == old.lease);
    let err = s
        .task_set_status(StatusChange::finish(old, "late"))
        .await
        .unwrap_err();
    assert!(is_stale(&err), "{err:?}");
    let err = s.task_heartbeat(old).await.unwrap_err();
    assert!(is_stale(&err), "{err:?}");
    let progress = Progress {
        percent: Some(50.0),
        message: "late".into(),
    };
    assert!(is_stale(
        &s.task_progress(old, &progress).await.unwrap_err()
    ));
    assert!(is_stale(
        &s.task_response_put(old, &Response::new("text/plain", "late"))
            .await
            .unwrap_err()
    ));
    assert!(is_stale(&s.task_start(old).await.unwrap_err()));

    assert_eq!(s.task_get(&TaskRef::Id(old.task)).await.unwrap(), before);
    assert_eq!(log_len(s, old.task).await, log_before);
    assert_eq!(
        s.task_response_get(&TaskRef::Id(old.task)).await.unwrap(),
        None
    );

    // The new attempt works; the old one stays stale even now.
    let new = s
        .task_start(claim_one(s, DAEMON_B).await.attempt)
        .await
        .unwrap()
        .attempt;
    assert!(is_stale(
        &s.task_set_status(StatusChange::fail(old, "late"))
            .await
            .unwrap_err()
    ));
    s.task_set_status(StatusChange::finish(new, "new attempt"))
        .await
        .unwrap();
    assert_eq!(status_of(s, old.task).await, Status::Finished);
}

/// The same daemon claiming the same task again gets a new lease, so its
/// own earlier attempt is stale too (fencing is per attempt, not per daemon).
pub async fn stale_attempt_after_a_rescue_and_reclaim_by_the_same_daemon(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    enqueue(s, &t, "x").await;
    let first = claim_one(s, DAEMON_A).await.attempt;
    // Handed back before it started, then claimed again by the same daemon.
    s.task_set_status(StatusChange::hand_back(first, "back"))
        .await
        .unwrap();
    let second = claim_one(s, DAEMON_A).await.attempt;
    assert_eq!(second.holder, first.holder);
    assert_eq!(second.lease, first.lease + 1);
    assert!(matches!(
        s.task_start(first).await,
        Err(Error::StaleAttempt { .. })
    ));
    assert_eq!(s.task_start(second).await.unwrap().start, 1);
}

/// A heartbeat moves the update time forward and writes no log record.
pub async fn heartbeat_refreshes_without_a_log_record(db: impl TestDb) {
    let (s, clock) = &clocked(&db).await;
    let t = register(s, task_type("t")).await;
    let a = running(s, &t, "x", DAEMON_A).await;
    let before = s.task_get(&TaskRef::Id(a.task)).await.unwrap();
    let log_before = log_len(s, a.task).await;
    clock.advance(std::time::Duration::from_millis(5));
    let results = s.task_heartbeat_many(&[a]).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()));
    let after = s.task_get(&TaskRef::Id(a.task)).await.unwrap();
    assert!(after.updated_at > before.updated_at);
    assert_eq!(after.status, Status::Running);
    assert_eq!(log_len(s, a.task).await, log_before);

    // A batch with one bad attempt fails that one alone.
    let bogus = Attempt { lease: 99, ..a };
    let results = s.task_heartbeat_many(&[bogus, a]).await.unwrap();
    assert!(matches!(results[0], Err(Error::StaleAttempt { .. })));
    assert!(results[1].is_ok());
    // Once finished, the attempt is over.
    s.task_set_status(StatusChange::finish(a, "done"))
        .await
        .unwrap();
    assert!(matches!(
        s.task_heartbeat(a).await,
        Err(Error::StaleAttempt { .. })
    ));
}

/// Progress shows in the task and is reset by the next start; bad values
/// are refused.
pub async fn progress_is_recorded_and_validated(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let a = running(s, &t, "x", DAEMON_A).await;
    let p = Progress {
        percent: Some(42.5),
        message: "halfway-ish".into(),
    };
    s.task_progress(a, &p).await.unwrap();
    assert_eq!(
        s.task_get(&TaskRef::Id(a.task)).await.unwrap().progress,
        Some(p)
    );
    for bad in [Some(-1.0), Some(100.5), Some(f64::NAN)] {
        let err = s
            .task_progress(
                a,
                &Progress {
                    percent: bad,
                    message: String::new(),
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }
    let long = Progress {
        percent: None,
        message: "x".repeat(5000),
    };
    assert!(matches!(
        s.task_progress(a, &long).await,
        Err(Error::InvalidArgument(_))
    ));

    s.task_set_status(StatusChange::hand_back(a, "again"))
        .await
        .unwrap();
    let b = s
        .task_start(claim_one(s, DAEMON_A).await.attempt)
        .await
        .unwrap();
    assert_eq!(
        s.task_get(&TaskRef::Id(b.attempt.task))
            .await
            .unwrap()
            .progress,
        None
    );
}

/// Text and binary responses round-trip; storing again replaces; bad MIME
/// types are refused.
pub async fn response_is_stored_replaced_and_read_back(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let a = running(s, &t, "x", DAEMON_A).await;
    let key = TaskRef::Id(a.task);
    assert_eq!(s.task_response_get(&key).await.unwrap(), None);

    let text = Response::new("text/plain; charset=utf-8", "sum = 6\n");
    s.task_response_put(a, &text).await.unwrap();
    assert_eq!(s.task_response_get(&key).await.unwrap(), Some(text));

    let binary: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let bin = Response::new("application/octet-stream", binary);
    s.task_response_put(a, &bin).await.unwrap();
    assert_eq!(s.task_response_get(&key).await.unwrap(), Some(bin.clone()));

    let err = s
        .task_response_put(a, &Response::new("not a mime", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert_eq!(s.task_response_get(&key).await.unwrap(), Some(bin));
    // The attempt that finished may still store its response.
    s.task_set_status(StatusChange::finish(a, "done"))
        .await
        .unwrap();
    let last = Response::new("application/json", "{\"ok\":true}");
    s.task_response_put(a, &last).await.unwrap();
    assert_eq!(s.task_response_get(&key).await.unwrap(), Some(last));
}

/// A finish that carries a response stores both or, when refused, neither.
pub async fn response_with_a_status_change_is_atomic(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let a = running(s, &t, "x", DAEMON_A).await;
    let r = Response::new("image/png", vec![137u8, 80, 78, 71, 0, 0, 255]);
    s.task_set_status(StatusChange::finish(a, "done").with_response(r.clone()))
        .await
        .unwrap();
    assert_eq!(
        s.task_response_get(&TaskRef::Id(a.task)).await.unwrap(),
        Some(r)
    );

    let b = running(s, &t, "y", DAEMON_A).await;
    s.task_reenqueue(&TaskRef::Id(b.task), "taken away")
        .await
        .unwrap();
    let late = StatusChange::finish(b, "late").with_response(Response::new("text/plain", "late"));
    assert!(matches!(
        s.task_set_status(late).await,
        Err(Error::StaleAttempt { .. })
    ));
    assert_eq!(
        s.task_response_get(&TaskRef::Id(b.task)).await.unwrap(),
        None
    );
}
