//! Contract: claims and starts (one by one, and claim-and-start in one call).

use atp_core::store::ClaimParams;
use atp_core::{Error, Status, StatusChange, Store, StoreExt, TaskRef, Transition, messages};
use serde_json::json;

use super::*;
use crate::testing::TestDb;

async fn claim_ids<S: Store>(s: &S, params: ClaimParams) -> Vec<String> {
    s.task_claim(&params)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.identifier.to_string())
        .collect()
}

/// The oldest ACCEPTED tasks come first, whatever their type.
pub async fn claim_is_fifo_across_types(db: impl TestDb) {
    let s = db.store();
    let a = register(s, task_type("a")).await;
    let b = register(s, task_type("b")).await;
    for (t, id) in [(&a, "1"), (&b, "2"), (&a, "3"), (&b, "4"), (&a, "5")] {
        enqueue(s, t, id).await;
    }
    assert_eq!(
        claim_ids(s, ClaimParams::new(DAEMON_A, 2)).await,
        ["1", "2"]
    );
    assert_eq!(
        claim_ids(s, ClaimParams::new(DAEMON_B, 10)).await,
        ["3", "4", "5"]
    );
    assert!(
        claim_ids(s, ClaimParams::new(DAEMON_A, 10))
            .await
            .is_empty()
    );
    assert!(
        s.task_claim(&ClaimParams::new(DAEMON_A, 0))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A daemon that names types gets only those, still in FIFO order.
pub async fn claim_can_be_restricted_to_types(db: impl TestDb) {
    let s = db.store();
    let a = register(s, task_type("a")).await;
    let b = register(s, task_type("b")).await;
    let c = register(s, task_type("c")).await;
    for (t, id) in [(&a, "1"), (&b, "2"), (&c, "3"), (&b, "4"), (&a, "5")] {
        enqueue(s, t, id).await;
    }
    let only = |types: Vec<_>| ClaimParams::new(DAEMON_A, 10).with_types(types);
    assert_eq!(claim_ids(s, only(vec![b.clone()])).await, ["2", "4"]);
    assert_eq!(
        claim_ids(s, only(vec![c.clone(), type_name("unknown")])).await,
        ["3"]
    );
    assert!(claim_ids(s, only(vec![])).await.is_empty());
    assert_eq!(
        claim_ids(s, ClaimParams::new(DAEMON_A, 10)).await,
        ["1", "5"]
    );
}

/// A claim moves the task to SCHEDULED for the holder, bumps the lease,
/// logs it and leaves the queue.
pub async fn claim_marks_scheduled_and_logs_the_holder(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let task = enqueue(s, &t, "x").await;
    let claimed = claim_one(s, DAEMON_A).await;
    assert_eq!(claimed.attempt.task, task.id);
    assert_eq!(claimed.attempt.holder, DAEMON_A);
    assert_eq!(claimed.attempt.lease, 1);
    assert_eq!(
        (claimed.task_type.clone(), claimed.identifier.as_str()),
        (t, "x")
    );

    let now = s.task_get(&TaskRef::Id(task.id)).await.unwrap();
    assert_eq!(now.status, Status::Scheduled);
    assert_eq!(now.holder, Some(DAEMON_A));
    assert_eq!(now.lease, 1);
    assert!(now.updated_at >= task.updated_at);
    let log = s.task_log(&TaskRef::Id(task.id)).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].status, Status::Scheduled);
    assert!(
        log[1].message.contains(&DAEMON_A.to_string()),
        "{}",
        log[1].message
    );
    assert_eq!(s.queue_size().await.unwrap(), 0);
}

/// Start: RUNNING, one more start, the type (handler, limits) and the input.
pub async fn start_counts_the_start_and_returns_what_the_handler_needs(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("sum").with_max_starts(4)).await;
    s.task_enqueue(NewTask::new(t.clone(), ident("x")).with_input(json!([1, 2])))
        .await
        .unwrap();
    let claimed = claim_one(s, DAEMON_A).await;
    let started = s.task_start(claimed.attempt).await.unwrap();
    assert_eq!(started.attempt, claimed.attempt);
    assert_eq!(started.start, 1);
    assert_eq!(started.task_type.handler.as_str(), "builtin:noop");
    assert_eq!(started.task_type.max_starts, 4);
    assert_eq!(started.identifier.as_str(), "x");
    assert_eq!(started.input, json!([1, 2]));
    let task = s
        .task_get(&TaskRef::Id(claimed.attempt.task))
        .await
        .unwrap();
    assert_eq!((task.status, task.starts), (Status::Running, 1));
    let log = s.task_log(&task.key()).await.unwrap();
    assert_eq!(
        log.last().unwrap().message,
        messages::started(DAEMON_A, 1, 4)
    );

    // A second start of the same attempt is an illegal transition.
    let again = s.task_start(claimed.attempt).await.unwrap_err();
    assert!(
        matches!(again, Error::InvalidTransition { source, .. } if source.transition == Transition::Start && source.from == Status::Running),
        "{again:?}"
    );
    assert_eq!(s.task_get(&task.key()).await.unwrap().starts, 1);
}

/// The (status, message) pairs of a task's log, oldest first.
async fn log_lines<S: Store>(s: &S, task: impl Into<TaskRef>) -> Vec<(Status, String)> {
    s.task_log(&task.into())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.status, r.message))
        .collect()
}

/// A claim ahead of free slots ([`ClaimParams::start`]): only the first
/// tasks in queue order are started; the rest are SCHEDULED, no start
/// counted, returned with the start number they will have. The holder's
/// [`StatusChange::start`] makes one RUNNING (counted, logged "Started by"),
/// also in one batch with its end; a hand-back of one never started keeps
/// its place in the queue and spends no start; a rescue of one found
/// SCHEDULED counts the start it may have made unrecorded.
pub async fn a_claim_ahead_starts_the_first_and_schedules_the_rest(db: impl TestDb) {
    let (s, clock) = clocked(&db).await;
    let s = &s;
    let t = register(s, task_type("t").with_max_starts(3).with_timeout_secs(5.0)).await;
    for id in ["1", "2", "3", "4", "5"] {
        enqueue(s, &t, id).await;
    }
    let params = ClaimParams::new(DAEMON_A, 4).starting(1);
    let claimed = s.task_claim_start(&params).await.unwrap();
    let shape: Vec<(&str, Status, u32)> = claimed
        .iter()
        .map(|c| (c.identifier.as_str(), c.status, c.start))
        .collect();
    assert_eq!(
        shape,
        [
            ("1", Status::Running, 1),
            ("2", Status::Scheduled, 1),
            ("3", Status::Scheduled, 1),
            ("4", Status::Scheduled, 1),
        ]
    );
    let scheduled = log_lines(s, claimed[1].attempt.task).await;
    assert_eq!(scheduled.last().unwrap().0, Status::Scheduled);
    let task = s
        .task_get(&TaskRef::Id(claimed[1].attempt.task))
        .await
        .unwrap();
    assert_eq!(
        (task.status, task.starts, task.holder),
        (Status::Scheduled, 0, Some(DAEMON_A))
    );
    assert_eq!(s.queue_size().await.unwrap(), 1);

    // Its start, alone and then in one batch with the next one's end.
    let (two, three, four) = (claimed[1].attempt, claimed[2].attempt, claimed[3].attempt);
    s.task_set_status(StatusChange::start(two)).await.unwrap();
    let task = s.task_get(&TaskRef::Id(two.task)).await.unwrap();
    assert_eq!((task.status, task.starts), (Status::Running, 1));
    assert_eq!(
        log_lines(s, two.task).await.last().unwrap(),
        &(Status::Running, messages::started(DAEMON_A, 1, 3))
    );
    let results = s
        .task_set_status_many(&[
            StatusChange::start(three),
            StatusChange::finish(three, "done"),
        ])
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let task = s.task_get(&TaskRef::Id(three.task)).await.unwrap();
    assert_eq!((task.status, task.starts), (Status::Finished, 1));
    let tail: Vec<Status> = log_lines(s, three.task).await.iter().map(|l| l.0).collect();
    assert_eq!(
        tail,
        [
            Status::Accepted,
            Status::Scheduled,
            Status::Running,
            Status::Finished
        ]
    );
    // A start of a task already running is refused.
    let again = s
        .task_set_status(StatusChange::start(two))
        .await
        .unwrap_err();
    assert!(
        matches!(again, Error::InvalidTransition { .. }),
        "{again:?}"
    );

    // Handed back unstarted: in its place (before "5"), no start spent.
    let before = s.task_get(&TaskRef::Id(four.task)).await.unwrap();
    s.task_set_status(StatusChange::hand_back(four, "no slot"))
        .await
        .unwrap();
    let after = s.task_get(&TaskRef::Id(four.task)).await.unwrap();
    assert_eq!(
        (after.status, after.starts, after.holder),
        (Status::Accepted, 0, None)
    );
    assert_eq!(after.enqueued_at, before.enqueued_at);
    assert_eq!(claimed_ids(s, DAEMON_B, 1).await, ["4"]);
    assert_queue_consistent(s).await;

    // Found SCHEDULED by a rescue: the start it may have made is counted.
    let four = s.task_get(&TaskRef::Id(four.task)).await.unwrap();
    assert_eq!((four.status, four.starts), (Status::Scheduled, 0));
    clock.advance(std::time::Duration::from_secs(6));
    let rescued = s.task_requeue_abandoned().await.unwrap();
    let found = rescued.iter().find(|r| r.id == four.id).expect("rescued");
    assert_eq!((found.outcome, found.starts), (Status::Accepted, 1));
    let task = s.task_get(&four.key()).await.unwrap();
    assert_eq!((task.status, task.starts), (Status::Accepted, 1));
    assert_eq!(
        log_lines(s, four.id).await.last().unwrap().1,
        messages::with_unseen_start(&messages::abandoned_requeued(5.0, 1, 3), 1)
    );
    assert_queue_consistent(s).await;
}

/// The identifiers `holder` claims with a plain claim of `limit`.
async fn claimed_ids<S: Store>(s: &S, holder: atp_core::DaemonId, limit: u32) -> Vec<String> {
    claim_ids(s, ClaimParams::new(holder, limit)).await
}

/// Claim-and-start: FIFO, restricted to types and limited like a claim; each
/// task RUNNING for the holder with a new lease and one start, logged
/// SCHEDULED then RUNNING, exactly as a claim followed by a start leaves it.
pub async fn claim_start_leaves_tasks_as_claim_then_start_would(db: impl TestDb) {
    let s = db.store();
    let a = register(s, task_type("a")).await;
    let b = register(s, task_type("b").with_max_starts(4)).await;
    let c = register(s, task_type("c")).await;
    for (t, id, n) in [(&a, "1", 1), (&b, "2", 2), (&c, "3", 3), (&b, "4", 4)] {
        s.task_enqueue(NewTask::new(t.clone(), ident(id)).with_input(json!({ "n": n })))
            .await
            .unwrap();
    }
    for (t, id) in [(&a, "5"), (&c, "6"), (&a, "7")] {
        enqueue(s, t, id).await;
    }
    assert_eq!(s.queue_size().await.unwrap(), 7);
    let params = |holder, limit| ClaimParams {
        message: "picked up".into(),
        ..ClaimParams::new(holder, limit)
    };

    // Nothing to do: no limit, or no types.
    assert!(
        s.task_claim_start(&params(DAEMON_A, 0))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.task_claim_start(&params(DAEMON_A, 10).with_types(vec![]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.queue_size().await.unwrap(), 7);

    // Restricted to one type, in FIFO order.
    let only_b = s
        .task_claim_start(&params(DAEMON_A, 10).with_types(vec![b.clone(), type_name("nope")]))
        .await
        .unwrap();
    let ids: Vec<_> = only_b.iter().map(|t| t.identifier.as_str()).collect();
    assert_eq!(ids, ["2", "4"]);
    assert_eq!(s.queue_size().await.unwrap(), 5);
    for (started, n) in only_b.iter().zip([2, 4]) {
        assert_eq!(started.attempt.holder, DAEMON_A);
        assert_eq!(started.attempt.lease, 1);
        assert_eq!(started.start, 1);
        assert_eq!(started.task_type.name, b);
        assert_eq!(started.task_type.handler.as_str(), "builtin:noop");
        assert_eq!(started.task_type.max_starts, 4);
        assert_eq!(started.input, json!({ "n": n }));
        let task = s
            .task_get(&TaskRef::Id(started.attempt.task))
            .await
            .unwrap();
        assert_eq!(task.status, Status::Running);
        assert_eq!(task.holder, Some(DAEMON_A));
        assert_eq!((task.lease, task.starts), (1, 1));
        assert_eq!(task.identifier, started.identifier);
        assert_eq!(
            log_lines(s, started.attempt.task).await,
            [
                (Status::Accepted, messages::ENQUEUED.to_owned()),
                (Status::Scheduled, "picked up".to_owned()),
                (Status::Running, messages::started(DAEMON_A, 1, 4)),
            ]
        );
    }

    // Limited, FIFO across types.
    let two = s.task_claim_start(&params(DAEMON_B, 2)).await.unwrap();
    let ids: Vec<_> = two.iter().map(|t| t.identifier.as_str()).collect();
    assert_eq!(ids, ["1", "3"]);
    assert_eq!(
        (two[0].task_type.name.clone(), two[1].task_type.name.clone()),
        (a.clone(), c.clone())
    );
    assert_eq!(two[1].input, json!({ "n": 3 }));
    assert_eq!(s.queue_size().await.unwrap(), 3);

    // The attempts returned are the tasks' current ones.
    let done: Vec<_> = only_b
        .iter()
        .chain(&two)
        .map(|t| StatusChange::finish(t.attempt, "done"))
        .collect();
    for result in s.task_set_status_many(&done).await.unwrap() {
        result.unwrap();
    }
    for t in only_b.iter().chain(&two) {
        assert_eq!(status_of(s, t.attempt.task).await, Status::Finished);
    }

    // Task 5 the old way (claim, then start), task 6 the new way: they end
    // up the same, log included.
    let claimed = s.task_claim(&params(DAEMON_A, 1)).await.unwrap();
    assert_eq!(claimed[0].identifier.as_str(), "5");
    let old_way = s.task_start(claimed[0].attempt).await.unwrap();
    let new_way = s.task_claim_start(&params(DAEMON_A, 1)).await.unwrap();
    assert_eq!(new_way.len(), 1);
    let new_way = &new_way[0];
    assert_eq!(new_way.identifier.as_str(), "6");
    assert_eq!(
        (new_way.attempt.holder, new_way.attempt.lease, new_way.start),
        (old_way.attempt.holder, old_way.attempt.lease, old_way.start)
    );
    assert_eq!(new_way.input, old_way.input);
    let old_task = s
        .task_get(&TaskRef::Id(old_way.attempt.task))
        .await
        .unwrap();
    let new_task = s
        .task_get(&TaskRef::Id(new_way.attempt.task))
        .await
        .unwrap();
    assert_eq!(
        (
            new_task.status,
            new_task.holder,
            new_task.lease,
            new_task.starts
        ),
        (
            old_task.status,
            old_task.holder,
            old_task.lease,
            old_task.starts
        )
    );
    assert_eq!(new_task.progress, old_task.progress);
    assert_eq!(
        log_lines(s, new_way.attempt.task).await,
        log_lines(s, old_way.attempt.task).await
    );

    // The last one, then an empty queue.
    let last = s.task_claim_start(&params(DAEMON_B, 10)).await.unwrap();
    let ids: Vec<_> = last.iter().map(|t| t.identifier.as_str()).collect();
    assert_eq!(ids, ["7"]);
    assert!(
        s.task_claim_start(&params(DAEMON_B, 10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.queue_size().await.unwrap(), 0);
    assert_queue_consistent(s).await;
    let counts = s.task_counts().await.unwrap();
    assert_eq!(counts.status(Status::Running), 3);
    assert_eq!(counts.status(Status::Finished), 4);
}

/// A task handed back and claimed-and-started again gets its second start
/// and a new lease; the first attempt is stale from then on. At the last
/// start, handing it back fails it, as after a plain start.
pub async fn claim_start_again_counts_the_start_and_fences_the_old_attempt(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t").with_max_starts(2)).await;
    enqueue(s, &t, "x").await;
    let claim = ClaimParams::new(DAEMON_A, 5);
    let first = s.task_claim_start(&claim).await.unwrap();
    assert_eq!(first.len(), 1);
    let first = first[0].attempt;
    assert_eq!(first.lease, 1);
    s.task_set_status(StatusChange::hand_back(first, "back"))
        .await
        .unwrap();
    assert_eq!(s.queue_size().await.unwrap(), 1);

    let second = s.task_claim_start(&claim).await.unwrap();
    assert_eq!(second.len(), 1);
    let second = &second[0];
    assert_eq!(second.attempt.task, first.task);
    assert_eq!(second.attempt.holder, first.holder);
    assert_eq!(second.attempt.lease, first.lease + 1);
    assert_eq!(second.start, 2);
    let task = s.task_get(&TaskRef::Id(first.task)).await.unwrap();
    assert_eq!(
        (task.status, task.starts, task.lease),
        (Status::Running, 2, 2)
    );
    assert_eq!(
        log_lines(s, first.task).await.last().unwrap(),
        &(Status::Running, messages::started(DAEMON_A, 2, 2))
    );

    // The first attempt changes nothing any more.
    for refused in [
        s.task_set_status(StatusChange::finish(first, "late")).await,
        s.task_heartbeat(first).await,
        s.task_start(first).await.map(|_| ()),
    ] {
        assert!(
            matches!(refused, Err(Error::StaleAttempt { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(status_of(s, first.task).await, Status::Running);

    // All starts used: handing it back fails it, as after a start.
    s.task_set_status(StatusChange::hand_back(second.attempt, "back"))
        .await
        .unwrap();
    assert_eq!(status_of(s, first.task).await, Status::Failed);
    assert!(s.task_claim_start(&claim).await.unwrap().is_empty());
    assert_queue_consistent(s).await;

    // A task re-enqueued by an operator past its starts still starts (and
    // counts from zero again).
    s.task_reenqueue(&TaskRef::Id(first.task), "again")
        .await
        .unwrap();
    let third = s.task_claim_start(&claim).await.unwrap();
    assert_eq!(
        (third.len(), third[0].start, third[0].attempt.lease),
        (1, 1, 3)
    );
    s.task_set_status(StatusChange::finish(third[0].attempt, "done"))
        .await
        .unwrap();
    assert_queue_consistent(s).await;
}

/// Microseconds since the epoch: the precision both engines store.
fn micros(t: time::OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000
}

/// A start says when its task last entered the queue, as `task_get` does,
/// whichever way it started (claim-and-start, or claim then start), and a
/// task back in the queue (re-enqueued, or handed back) starts with its new
/// time.
pub async fn start_carries_when_the_task_entered_the_queue(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t").with_max_starts(3)).await;
    for id in ["x", "y", "z"] {
        enqueue(s, &t, id).await;
    }
    let enqueued_at = |task| async move {
        micros(
            s.task_get(&TaskRef::Id(task))
                .await
                .expect("reading a task")
                .enqueued_at,
        )
    };

    // Claimed and started in one go.
    let first = s
        .task_claim_start(&ClaimParams::new(DAEMON_A, 1))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let x = &first[0];
    assert_eq!(x.identifier.as_str(), "x");
    assert_eq!(micros(x.enqueued_at), enqueued_at(x.attempt.task).await);

    // Claimed, then started.
    let claimed = s.task_claim(&ClaimParams::new(DAEMON_B, 5)).await.unwrap();
    let attempts: Vec<Attempt> = claimed.iter().map(|c| c.attempt).collect();
    assert_eq!(attempts.len(), 2);
    let started: Vec<_> = s
        .task_start_many(&attempts)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.expect("starting"))
        .collect();
    let ids: Vec<_> = started.iter().map(|t| t.identifier.as_str()).collect();
    assert_eq!(ids, ["y", "z"]);
    for one in &started {
        assert_eq!(micros(one.enqueued_at), enqueued_at(one.attempt.task).await);
    }

    // Re-enqueued by an operator: the next start carries the new time.
    let before = micros(x.enqueued_at);
    let again = s
        .task_reenqueue(&TaskRef::Id(x.attempt.task), "again")
        .await
        .unwrap();
    assert!(micros(again.enqueued_at) >= before);
    let second = s
        .task_claim_start(&ClaimParams::new(DAEMON_A, 5))
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt.task, x.attempt.task);
    assert_eq!(micros(second[0].enqueued_at), micros(again.enqueued_at));
    assert_eq!(
        micros(second[0].enqueued_at),
        enqueued_at(x.attempt.task).await
    );

    // Handed back by its holder: the same through claim then start.
    let y = &started[0];
    s.task_set_status(StatusChange::hand_back(y.attempt, "back"))
        .await
        .unwrap();
    let back = enqueued_at(y.attempt.task).await;
    assert!(back >= micros(y.enqueued_at));
    let reclaimed = claim_one(s, DAEMON_B).await;
    assert_eq!(reclaimed.attempt.task, y.attempt.task);
    let restarted = s.task_start(reclaimed.attempt).await.unwrap();
    assert_eq!(restarted.start, 2);
    assert_eq!(micros(restarted.enqueued_at), back);
    assert_queue_consistent(s).await;
}
