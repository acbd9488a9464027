//! Contract: operators' reads, delete and re-enqueue.

use atp_core::{
    Error, Response, Status, StatusChange, Store, StoreExt, TaskFilter, TaskId, TaskRef, messages,
};

use super::*;
use crate::testing::TestDb;

/// The same task by id and by (type, identifier).
pub async fn task_is_found_by_id_and_by_key(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let task = enqueue(s, &t, "x").await;
    let by_id = s.task_get(&TaskRef::Id(task.id)).await.unwrap();
    let by_key = s
        .task_get(&TaskRef::Key(t.clone(), ident("x")))
        .await
        .unwrap();
    assert_eq!(by_id, by_key);
    assert_eq!(
        s.task_log(&TaskRef::Id(task.id)).await.unwrap(),
        s.task_log(&task.key()).await.unwrap()
    );
}

/// Reads and writes on a task that does not exist say so, by id and by key.
pub async fn missing_task_is_not_found_everywhere(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    for missing in [
        TaskRef::Id(TaskId(987_654)),
        TaskRef::Key(t.clone(), ident("nope")),
    ] {
        assert!(matches!(
            s.task_get(&missing).await,
            Err(Error::TaskNotFound(_))
        ));
        assert!(matches!(
            s.task_log(&missing).await,
            Err(Error::TaskNotFound(_))
        ));
        assert!(matches!(
            s.task_input(&missing).await,
            Err(Error::TaskNotFound(_))
        ));
        assert!(matches!(
            s.task_response_get(&missing).await,
            Err(Error::TaskNotFound(_))
        ));
        assert!(matches!(
            s.task_delete(&missing).await,
            Err(Error::TaskNotFound(_))
        ));
        assert!(matches!(
            s.task_reenqueue(&missing, "x").await,
            Err(Error::TaskNotFound(_))
        ));
    }
    let ghost = atp_core::Attempt {
        task: TaskId(987_654),
        holder: DAEMON_A,
        lease: 1,
    };
    assert!(matches!(
        s.task_start(ghost).await,
        Err(Error::TaskNotFound(_))
    ));
    assert!(matches!(
        s.task_heartbeat(ghost).await,
        Err(Error::TaskNotFound(_))
    ));
    assert!(matches!(
        s.task_set_status(StatusChange::finish(ghost, "x")).await,
        Err(Error::TaskNotFound(_))
    ));
}

/// Pages follow (update time, id) newest first, never repeat or skip a
/// task, and filter by status, by type, or both.
pub async fn list_pages_newest_first_with_filters(db: impl TestDb) {
    let s = db.store();
    let a = register(s, task_type("a")).await;
    let b = register(s, task_type("b")).await;
    for i in 0..12 {
        enqueue(s, if i % 3 == 0 { &b } else { &a }, &format!("t{i:02}")).await;
    }
    for _ in 0..5 {
        let claimed = claim_one(s, DAEMON_A).await;
        s.task_start(claimed.attempt).await.unwrap();
    }

    let collect = |filter: TaskFilter| async move {
        let mut all = Vec::new();
        let mut filter = filter;
        loop {
            let page = s.task_list(&filter).await.unwrap();
            assert!(page.tasks.len() <= filter.effective_limit() as usize);
            all.extend(page.tasks);
            match page.next {
                Some(next) => filter.after = Some(next),
                None => return all,
            }
        }
    };
    let everything = collect(TaskFilter {
        limit: 5,
        ..Default::default()
    })
    .await;
    assert_eq!(everything.len(), 12);
    let keys: Vec<_> = everything.iter().map(|t| (t.updated_at, t.id)).collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|x, y| y.cmp(x));
    assert_eq!(keys, sorted, "newest update first, then highest id");

    let running = collect(TaskFilter {
        status: Some(Status::Running),
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(running.len(), 5);
    assert!(running.iter().all(|t| t.status == Status::Running));
    let of_b = collect(TaskFilter {
        task_type: Some(b.clone()),
        limit: 3,
        ..Default::default()
    })
    .await;
    assert_eq!(of_b.len(), 4);
    assert!(of_b.iter().all(|t| t.task_type == b));
    let queued_a = collect(TaskFilter {
        status: Some(Status::Accepted),
        task_type: Some(a.clone()),
        ..Default::default()
    })
    .await;
    let expected = everything
        .iter()
        .filter(|t| t.status == Status::Accepted && t.task_type == a)
        .count();
    assert_eq!(queued_a.len(), expected);
    assert!(expected > 0);
}

/// A holder filter lists exactly the tasks that daemon holds (SCHEDULED,
/// RUNNING, PAUSED): not the ones it ran to their end, not another
/// daemon's, not queued ones; it combines with a status filter and pages.
pub async fn list_filters_by_holder(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    for i in 0..10 {
        enqueue(s, &t, &format!("t{i:02}")).await;
    }
    // Claims alternate between the daemons so that their tasks interleave.
    let mut held_a = Vec::new();
    let mut held_b = Vec::new();
    for (i, to) in [
        Status::Scheduled,
        Status::Running,
        Status::Finished,
        Status::Paused,
        Status::Running,
        Status::Failed,
    ]
    .into_iter()
    .enumerate()
    {
        let a = claim_one(s, DAEMON_A).await.attempt;
        if to != Status::Scheduled {
            s.task_start(a).await.unwrap();
        }
        if matches!(to, Status::Paused | Status::Finished | Status::Failed) {
            s.task_set_status(change_to(a, to, "by the test"))
                .await
                .unwrap();
        }
        if to.is_held() {
            held_a.push(a.task);
        }
        if i % 2 == 0 {
            let b = claim_one(s, DAEMON_B).await.attempt;
            s.task_start(b).await.unwrap();
            if i == 0 {
                s.task_set_status(StatusChange::finish(b, "done"))
                    .await
                    .unwrap();
            } else {
                held_b.push(b.task);
            }
        }
    }
    // The remaining task stays queued, with no holder.
    assert_eq!(s.queue_size().await.unwrap(), 1);

    let collect = |filter: TaskFilter| async move {
        let mut all = Vec::new();
        let mut filter = filter;
        loop {
            let page = s.task_list(&filter).await.unwrap();
            assert!(page.tasks.len() <= filter.effective_limit() as usize);
            all.extend(page.tasks);
            match page.next {
                Some(next) => filter.after = Some(next),
                None => return all,
            }
        }
    };
    let newest_first = |tasks: &[atp_core::Task]| {
        let keys: Vec<_> = tasks.iter().map(|t| (t.updated_at, t.id)).collect();
        let mut sorted = keys.clone();
        sorted.sort_by(|x, y| y.cmp(x));
        keys == sorted
    };
    let ids = |tasks: &[atp_core::Task]| {
        let mut ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
        ids.sort();
        ids
    };
    held_a.sort();
    held_b.sort();

    let of_a = s
        .task_list(&TaskFilter {
            holder: Some(DAEMON_A),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&of_a.tasks), held_a);
    assert!(of_a.next.is_none());
    assert!(
        newest_first(&of_a.tasks),
        "newest update first, then highest id"
    );
    assert!(
        of_a.tasks
            .iter()
            .all(|t| t.holder == Some(DAEMON_A) && t.status.is_held())
    );
    assert_eq!(
        ids(&collect(TaskFilter {
            holder: Some(DAEMON_B),
            ..Default::default()
        })
        .await),
        held_b
    );

    // One task a page, following `next`: the same tasks in the same order.
    let paged = collect(TaskFilter {
        holder: Some(DAEMON_A),
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(paged, of_a.tasks);

    // With a status filter, also paged.
    let running_a = collect(TaskFilter {
        holder: Some(DAEMON_A),
        status: Some(Status::Running),
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(running_a.len(), 2);
    assert!(newest_first(&running_a));
    assert!(
        running_a
            .iter()
            .all(|t| t.holder == Some(DAEMON_A) && t.status == Status::Running)
    );
    let paused_a = collect(TaskFilter {
        holder: Some(DAEMON_A),
        status: Some(Status::Paused),
        ..Default::default()
    })
    .await;
    assert_eq!(paused_a.len(), 1);
    // A finished task keeps its holder but is no longer held.
    for done in [Status::Finished, Status::Failed] {
        let finished = collect(TaskFilter {
            status: Some(done),
            ..Default::default()
        })
        .await;
        assert!(finished.iter().any(|t| t.holder == Some(DAEMON_A)));
        assert!(
            collect(TaskFilter {
                holder: Some(DAEMON_A),
                status: Some(done),
                ..Default::default()
            })
            .await
            .is_empty()
        );
    }
    // With a type filter, and a daemon holding nothing.
    assert_eq!(
        ids(&collect(TaskFilter {
            holder: Some(DAEMON_A),
            task_type: Some(t.clone()),
            limit: 2,
            ..Default::default()
        })
        .await),
        held_a
    );
    assert!(
        collect(TaskFilter {
            holder: Some(atp_core::DaemonId(42)),
            ..Default::default()
        })
        .await
        .is_empty()
    );
}

/// Counts by status and by (type, status) match the tasks.
pub async fn counts_by_status_and_type(db: impl TestDb) {
    let s = db.store();
    let a = register(s, task_type("a")).await;
    let b = register(s, task_type("b")).await;
    enqueue(s, &a, "1").await;
    enqueue(s, &a, "2").await;
    enqueue(s, &b, "3").await;
    let x = s
        .task_start(claim_one(s, DAEMON_A).await.attempt)
        .await
        .unwrap();
    s.task_set_status(StatusChange::finish(x.attempt, "ok"))
        .await
        .unwrap();

    let counts = s.task_counts().await.unwrap();
    assert_eq!(counts.status(Status::Accepted), 2);
    assert_eq!(counts.status(Status::Finished), 1);
    assert_eq!(counts.status(Status::Running), 0);
    assert_eq!(counts.total(), 3);
    let mut by_type = counts.by_type.clone();
    by_type.sort_by(|x, y| (x.0.as_str(), x.1).cmp(&(y.0.as_str(), y.1)));
    assert_eq!(
        by_type,
        vec![
            (a.clone(), Status::Accepted, 1),
            (a, Status::Finished, 1),
            (b, Status::Accepted, 1)
        ]
    );
    assert_eq!(s.queue_size().await.unwrap(), 2);
}

/// Delete takes the log and the response with the task and frees its
/// identifier; deleting a queued task shrinks the queue.
pub async fn delete_removes_the_task_with_its_log_and_response(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let a = running(s, &t, "done", DAEMON_A).await;
    s.task_set_status(
        StatusChange::finish(a, "ok").with_response(Response::new("text/plain", "r")),
    )
    .await
    .unwrap();
    let queued = enqueue(s, &t, "queued").await;
    assert_eq!(s.queue_size().await.unwrap(), 1);

    s.task_delete(&TaskRef::Key(t.clone(), ident("done")))
        .await
        .unwrap();
    assert!(matches!(
        s.task_get(&TaskRef::Id(a.task)).await,
        Err(Error::TaskNotFound(_))
    ));
    s.task_delete(&TaskRef::Id(queued.id)).await.unwrap();
    assert_eq!(s.queue_size().await.unwrap(), 0);
    assert_eq!(s.task_counts().await.unwrap().total(), 0);

    // The identifier is free again, with a fresh log and no response.
    let again = enqueue(s, &t, "done").await;
    assert_ne!(again.id, a.task);
    assert_eq!(log_len(s, again.id).await, 1);
    assert_eq!(s.task_response_get(&again.key()).await.unwrap(), None);
    assert_queue_consistent(s).await;
}

/// An operator re-enqueues from any status but ACCEPTED; the task gets its
/// full starts back, loses its holder and is logged.
pub async fn operator_reenqueue_follows_the_table_and_resets_starts(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t").with_max_starts(1)).await;
    let queued = enqueue(s, &t, "queued").await;
    let err = s.task_reenqueue(&queued.key(), "again").await.unwrap_err();
    assert!(matches!(err, Error::InvalidTransition { .. }), "{err:?}");
    assert_eq!(log_len(s, queued.id).await, 1);
    s.task_delete(&queued.key()).await.unwrap();

    let a = running(s, &t, "failed", DAEMON_A).await;
    s.task_set_status(StatusChange::fail(a, "boom"))
        .await
        .unwrap();
    let task = s.task_reenqueue(&TaskRef::Id(a.task), "").await.unwrap();
    assert_eq!(
        (task.status, task.starts, task.holder),
        (Status::Accepted, 0, None)
    );
    assert!(task.enqueued_at > task.inserted_at);
    let log = s.task_log(&task.key()).await.unwrap();
    assert_eq!(log.last().unwrap().message, messages::REENQUEUED);
    assert_eq!(s.queue_size().await.unwrap(), 1);

    // Scheduled, running and paused tasks too.
    for (id, target) in [
        ("s", Status::Scheduled),
        ("r", Status::Running),
        ("p", Status::Paused),
    ] {
        enqueue(s, &t, id).await;
        let claimed = s
            .task_claim(&atp_core::ClaimParams::new(DAEMON_B, 10))
            .await
            .unwrap();
        let mine = claimed
            .iter()
            .find(|c| c.identifier.as_str() == id)
            .unwrap()
            .attempt;
        for other in claimed.iter().filter(|c| c.identifier.as_str() != id) {
            s.task_set_status(StatusChange::hand_back(other.attempt, "not mine"))
                .await
                .unwrap();
        }
        if target != Status::Scheduled {
            s.task_start(mine).await.unwrap();
        }
        if target == Status::Paused {
            s.task_set_status(StatusChange::pause(mine, "pause"))
                .await
                .unwrap();
        }
        assert_eq!(status_of(s, mine.task).await, target);
        let task = s
            .task_reenqueue(&TaskRef::Id(mine.task), "operator")
            .await
            .unwrap();
        assert_eq!(task.status, Status::Accepted, "from {target}");
    }
    assert_queue_consistent(s).await;
}
