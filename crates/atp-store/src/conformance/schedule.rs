//! Contract: schedules (periodic tasks). Each occurrence is enqueued once:
//! the store moves a schedule's last enqueued occurrence forward by
//! compare-and-set in the transaction that enqueues the task, so a second
//! caller, or any caller after the task was retired, changes nothing.

use std::sync::Arc;

use atp_core::schedule::{
    CatchUp, NewSchedule, Recurrence, Schedule, ScheduleFired, ScheduleName, ScheduleOccurrence,
};
use atp_core::{Error, Status, Store, StoreOptions, TaskRef, TypeName};
use time::OffsetDateTime;

use super::*;
use crate::testing::TestDb;

/// A schedule name (panics on an invalid literal: tests only).
pub fn schedule_name(name: &str) -> ScheduleName {
    ScheduleName::new(name).expect("valid schedule name")
}

/// A schedule of `t` every second, in UTC, with no input.
pub fn every_second(name: &str, t: &TypeName) -> NewSchedule {
    NewSchedule::new(
        schedule_name(name),
        t.clone(),
        Recurrence::new("* * * * * *", "UTC").expect("valid expression"),
    )
}

/// The first `n` occurrences after the schedule's creation (the store
/// does not compare them with "now", so they may lie in the future).
pub fn occurrences(s: &Schedule, n: usize) -> Vec<OffsetDateTime> {
    let mut at = s.created_at;
    (0..n)
        .map(|_| {
            at = s.recurrence.next_after(at).expect("an occurrence");
            at
        })
        .collect()
}

/// Fires `s` at `at`.
pub async fn fire<S: Store>(store: &S, s: &Schedule, at: OffsetDateTime) -> ScheduleFired {
    store
        .schedule_enqueue(&ScheduleOccurrence {
            schedule: s.name.clone(),
            at,
        })
        .await
        .expect("enqueueing an occurrence")
}

/// A schedule is stored with everything it was given, read, listed by
/// name, changed (keeping its pause, creation and last occurrence),
/// removed; unknown names are `ScheduleNotFound`, an unknown type is
/// `TypeNotFound` and an over-long input `InputTooLarge`, storing nothing.
pub async fn schedule_is_stored_read_listed_changed_and_removed(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("report")).await;
    let new = NewSchedule::new(
        schedule_name("nightly"),
        t.clone(),
        Recurrence::new("0 2 * * *", "Europe/Vienna").unwrap(),
    )
    .with_input(serde_json::json!({"depth": 2}))
    .with_catch_up(CatchUp::Last);
    let stored = s.schedule_upsert(&new).await.unwrap();
    assert_eq!(stored.name, new.name);
    assert_eq!(stored.task_type, t);
    assert_eq!(stored.recurrence.expression(), "0 2 * * *");
    assert_eq!(stored.recurrence.timezone(), "Europe/Vienna");
    assert_eq!(stored.input, serde_json::json!({"depth": 2}));
    assert_eq!(stored.catch_up, CatchUp::Last);
    assert!(!stored.paused);
    assert_eq!(stored.last_enqueued, None);
    assert_eq!(s.schedule_get(&new.name).await.unwrap(), stored);
    s.schedule_upsert(&every_second("a-first", &t))
        .await
        .unwrap();
    let names: Vec<String> = s
        .schedule_list()
        .await
        .unwrap()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(names, ["a-first", "nightly"]);

    // A change keeps the pause, the creation and the last occurrence.
    let first = s.schedule_get(&schedule_name("a-first")).await.unwrap();
    let at = occurrences(&first, 1)[0];
    assert!(matches!(
        fire(s, &first, at).await,
        ScheduleFired::Enqueued(_)
    ));
    s.schedule_set_paused(&first.name, true).await.unwrap();
    let changed = s
        .schedule_upsert(
            &NewSchedule::new(
                first.name.clone(),
                t.clone(),
                Recurrence::new("*/2 * * * * *", "UTC").unwrap(),
            )
            .with_catch_up(CatchUp::Last),
        )
        .await
        .unwrap();
    assert_eq!(changed.recurrence.expression(), "*/2 * * * * *");
    assert_eq!(changed.catch_up, CatchUp::Last);
    assert!(changed.paused);
    assert_eq!(changed.last_enqueued, Some(at));
    assert_eq!(changed.created_at, first.created_at);

    let unknown = type_name("unknown");
    let err = s
        .schedule_upsert(&every_second("orphan", &unknown))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TypeNotFound(_)), "{err}");
    let small = db
        .open(StoreOptions {
            max_input_bytes: 8,
            ..StoreOptions::default()
        })
        .await;
    let big = every_second("big", &t).with_input(serde_json::json!("more than eight bytes"));
    let err = small.schedule_upsert(&big).await.unwrap_err();
    assert!(matches!(err, Error::InputTooLarge { .. }), "{err}");
    assert_eq!(s.schedule_list().await.unwrap().len(), 2, "nothing stored");

    s.schedule_delete(&new.name).await.unwrap();
    let gone = schedule_name("nightly");
    assert!(matches!(
        s.schedule_get(&gone).await,
        Err(Error::ScheduleNotFound(_))
    ));
    assert!(matches!(
        s.schedule_delete(&gone).await,
        Err(Error::ScheduleNotFound(_))
    ));
    assert!(matches!(
        s.schedule_set_paused(&gone, true).await,
        Err(Error::ScheduleNotFound(_))
    ));
    let err = s
        .schedule_enqueue(&ScheduleOccurrence { schedule: gone, at })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ScheduleNotFound(_)), "{err}");
    // Its enqueued task stays; deleting the type deletes its schedules.
    assert_eq!(s.queue_size().await.unwrap(), 1);
    s.task_type_delete(&t, true).await.unwrap();
    assert!(s.schedule_list().await.unwrap().is_empty());
}

/// An occurrence is enqueued once: as a task named after the schedule and
/// the occurrence, ACCEPTED with one log record, the schedule's input, and
/// the schedule advanced; the same occurrence again, an earlier one, or one
/// before the schedule's creation is `Passed` and changes nothing; a time
/// that is no occurrence is refused.
pub async fn each_occurrence_is_enqueued_once_and_the_schedule_only_moves_forward(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("tick")).await;
    let sch = s
        .schedule_upsert(&every_second("tick", &t).with_input(serde_json::json!([1, 2])))
        .await
        .unwrap();
    let at = occurrences(&sch, 3);

    let ScheduleFired::Enqueued(task) = fire(s, &sch, at[1]).await else {
        panic!("the first occurrence is enqueued");
    };
    assert_eq!(task.identifier, sch.identifier_for(at[1]));
    assert!(task.identifier.as_str().starts_with("tick@"));
    assert_eq!(task.status, Status::Accepted);
    assert_eq!(
        s.task_input(&task.key()).await.unwrap(),
        serde_json::json!([1, 2])
    );
    let log = s.task_log(&task.key()).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, Status::Accepted);
    assert!(
        log[0].message.contains("schedule tick"),
        "{}",
        log[0].message
    );
    assert_eq!(
        s.schedule_get(&sch.name).await.unwrap().last_enqueued,
        Some(at[1])
    );

    assert_eq!(fire(s, &sch, at[1]).await, ScheduleFired::Passed, "again");
    assert_eq!(fire(s, &sch, at[0]).await, ScheduleFired::Passed, "earlier");
    let before = sch.created_at - time::Duration::seconds(5);
    let before = sch.recurrence.next_after(before).unwrap();
    assert!(before <= sch.created_at);
    assert_eq!(fire(s, &sch, before).await, ScheduleFired::Passed);
    let err = s
        .schedule_enqueue(&ScheduleOccurrence {
            schedule: sch.name.clone(),
            at: at[2] + time::Duration::milliseconds(500),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(s.queue_size().await.unwrap(), 1);

    assert!(matches!(
        fire(s, &sch, at[2]).await,
        ScheduleFired::Enqueued(_)
    ));
    assert_eq!(
        s.schedule_get(&sch.name).await.unwrap().last_enqueued,
        Some(at[2])
    );
    assert_eq!(s.queue_size().await.unwrap(), 2);
    assert_queue_consistent(s).await;
}

/// A task of an occurrence that was deleted (retired, or by an operator)
/// is not enqueued again: the schedule has passed it.
pub async fn a_retired_occurrence_is_not_enqueued_again(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("tick")).await;
    let sch = s.schedule_upsert(&every_second("tick", &t)).await.unwrap();
    let at = occurrences(&sch, 1)[0];
    let ScheduleFired::Enqueued(task) = fire(s, &sch, at).await else {
        panic!("enqueued");
    };
    s.task_delete(&TaskRef::Id(task.id)).await.unwrap();
    assert_eq!(fire(s, &sch, at).await, ScheduleFired::Passed);
    assert!(matches!(
        s.task_get(&task.key()).await,
        Err(Error::TaskNotFound(_))
    ));
    assert_eq!(s.task_counts().await.unwrap().total(), 0);
}

/// A task that already has the occurrence's identifier (enqueued by hand)
/// is not duplicated: `Existed`, and the schedule moves past it.
pub async fn an_occurrence_whose_task_exists_is_not_duplicated(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("tick")).await;
    let sch = s.schedule_upsert(&every_second("tick", &t)).await.unwrap();
    let at = occurrences(&sch, 1)[0];
    enqueue(s, &t, sch.identifier_for(at).as_str()).await;
    assert_eq!(fire(s, &sch, at).await, ScheduleFired::Existed);
    assert_eq!(
        s.schedule_get(&sch.name).await.unwrap().last_enqueued,
        Some(at)
    );
    assert_eq!(s.queue_size().await.unwrap(), 1);
    assert_eq!(fire(s, &sch, at).await, ScheduleFired::Passed);
    assert_queue_consistent(s).await;
}

/// A paused schedule enqueues nothing; once resumed, it does.
pub async fn a_paused_schedule_enqueues_nothing_until_resumed(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("tick")).await;
    let sch = s.schedule_upsert(&every_second("tick", &t)).await.unwrap();
    let at = occurrences(&sch, 2);
    let paused = s.schedule_set_paused(&sch.name, true).await.unwrap();
    assert!(paused.paused);
    assert!(s.schedule_set_paused(&sch.name, true).await.unwrap().paused);
    assert!(paused.due(at[1] + time::Duration::SECOND).is_empty());
    assert_eq!(fire(s, &sch, at[0]).await, ScheduleFired::Passed);
    assert_eq!(s.queue_size().await.unwrap(), 0);
    assert_eq!(s.schedule_get(&sch.name).await.unwrap().last_enqueued, None);
    assert!(
        !s.schedule_set_paused(&sch.name, false)
            .await
            .unwrap()
            .paused
    );
    assert!(matches!(
        fire(s, &sch, at[0]).await,
        ScheduleFired::Enqueued(_)
    ));
    assert_eq!(s.queue_size().await.unwrap(), 1);
}

/// A full queue refuses an occurrence with `QueueFull` and changes
/// nothing, so the same occurrence goes in once there is room.
pub async fn a_full_queue_refuses_an_occurrence_and_it_goes_in_later(db: impl TestDb) {
    let s = db
        .open(StoreOptions {
            max_queue_size: 1,
            ..StoreOptions::default()
        })
        .await;
    let t = register(&s, task_type("tick")).await;
    let sch = s.schedule_upsert(&every_second("tick", &t)).await.unwrap();
    let at = occurrences(&sch, 1)[0];
    enqueue(&s, &t, "filler").await;
    let err = s
        .schedule_enqueue(&ScheduleOccurrence {
            schedule: sch.name.clone(),
            at,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::QueueFull { limit: 1 }), "{err}");
    assert_eq!(s.schedule_get(&sch.name).await.unwrap().last_enqueued, None);
    assert_eq!(s.task_counts().await.unwrap().total(), 1);
    claim_one(&s, DAEMON_A).await;
    assert!(matches!(
        fire(&s, &sch, at).await,
        ScheduleFired::Enqueued(_)
    ));
    assert_queue_consistent(&s).await;
}

/// Four handles (daemons) fire the same ten occurrences at once, each in
/// order: every occurrence is enqueued by exactly one of them.
pub async fn concurrent_daemons_enqueue_each_occurrence_exactly_once(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("tick")).await;
    let sch = Arc::new(s.schedule_upsert(&every_second("tick", &t)).await.unwrap());
    let at = Arc::new(occurrences(&sch, 10));
    let mut daemons = Vec::new();
    for _ in 0..4 {
        let handle = db.open(StoreOptions::default()).await;
        let (sch, at) = (Arc::clone(&sch), Arc::clone(&at));
        daemons.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for a in at.iter() {
                if let ScheduleFired::Enqueued(task) = fire(&handle, &sch, *a).await {
                    won.push(task.identifier.to_string());
                }
            }
            won
        }));
    }
    let mut won = Vec::new();
    for d in daemons {
        won.extend(d.await.unwrap());
    }
    won.sort();
    let mut expected: Vec<String> = at
        .iter()
        .map(|a| sch.identifier_for(*a).to_string())
        .collect();
    expected.sort();
    assert_eq!(won, expected);
    assert_eq!(s.queue_size().await.unwrap(), 10);
    assert_queue_consistent(s).await;
}
