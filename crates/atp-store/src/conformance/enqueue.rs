//! Contract: producers.

use atp_core::{Error, NewTask, Status, Store, StoreOptions, TaskRef, messages};
use serde_json::json;

use super::*;
use crate::testing::TestDb;

/// A new task is ACCEPTED, logged once, queued, and keeps its input.
pub async fn enqueue_creates_an_accepted_logged_task(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("sum")).await;
    let input = json!({"numbers": [1, 2.5, "3"], "nested": {"ok": true}});
    let task = s
        .task_enqueue(
            NewTask::new(t.clone(), ident("job-1"))
                .with_input(input.clone())
                .with_message("from the test"),
        )
        .await
        .unwrap();
    assert_eq!(task.status, Status::Accepted);
    assert_eq!((task.starts, task.lease, task.holder), (0, 0, None));
    assert_eq!(task.inserted_at, task.updated_at);
    assert_eq!(
        task.inserted_at.nanosecond() % 1_000,
        0,
        "microsecond precision"
    );
    assert_eq!(s.task_get(&TaskRef::Id(task.id)).await.unwrap(), task);

    let log = s.task_log(&task.key()).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].status, log[0].message.as_str()),
        (Status::Accepted, "from the test")
    );
    assert_eq!(s.task_input(&task.key()).await.unwrap(), input);
    assert_eq!(s.queue_size().await.unwrap(), 1);

    let plain = enqueue(s, &t, "job-2").await;
    assert_eq!(
        s.task_log(&plain.key()).await.unwrap()[0].message,
        messages::ENQUEUED
    );
    assert_eq!(
        s.task_input(&plain.key()).await.unwrap(),
        serde_json::Value::Null
    );
}

/// A second task with the same (type, identifier) is refused; the first is
/// untouched; the same identifier under another type is fine.
pub async fn enqueue_refuses_a_duplicate_and_changes_nothing(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("a")).await;
    let other = register(s, task_type("b")).await;
    let first = s
        .task_enqueue(NewTask::new(t.clone(), ident("same")).with_input(json!(1)))
        .await
        .unwrap();
    let err = s
        .task_enqueue(NewTask::new(t.clone(), ident("same")).with_input(json!(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateTask { task_type, identifier } if task_type == "a" && identifier == "same"),
        "{err:?}"
    );
    assert_eq!(s.task_get(&first.key()).await.unwrap(), first);
    assert_eq!(s.task_input(&first.key()).await.unwrap(), json!(1));
    assert_eq!(log_len(s, first.id).await, 1);
    assert_eq!(s.queue_size().await.unwrap(), 1);
    enqueue(s, &other, "same").await;
    assert_eq!(s.queue_size().await.unwrap(), 2);
}

/// A batch with one bad task (duplicate in the table, duplicate inside the
/// batch, unknown type) enqueues nothing; a good batch keeps its order.
pub async fn enqueue_many_is_all_or_nothing(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("batch")).await;
    enqueue(s, &t, "exists").await;
    let batch = |ids: &[&str]| -> Vec<NewTask> {
        ids.iter()
            .map(|i| NewTask::new(t.clone(), ident(i)))
            .collect()
    };

    let err = s
        .task_enqueue_many(batch(&["n1", "exists", "n2"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateTask { identifier, .. } if identifier == "exists"),
        "{err:?}"
    );
    let err = s
        .task_enqueue_many(batch(&["n1", "n2", "n1"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateTask { identifier, .. } if identifier == "n1"),
        "{err:?}"
    );
    let mut mixed = batch(&["n1"]);
    mixed.push(NewTask::new(type_name("nope"), ident("n2")));
    assert!(matches!(
        s.task_enqueue_many(mixed).await,
        Err(Error::TypeNotFound(_))
    ));
    assert_eq!(s.task_counts().await.unwrap().total(), 1);
    assert_eq!(s.queue_size().await.unwrap(), 1);

    let ids = s.task_enqueue_many(batch(&["c", "a", "b"])).await.unwrap();
    assert_eq!(ids.len(), 3);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids follow input order: {ids:?}"
    );
    for (id, name) in ids.iter().zip(["c", "a", "b"]) {
        let task = s.task_get(&TaskRef::Id(*id)).await.unwrap();
        assert_eq!(task.identifier.as_str(), name);
        assert_eq!(log_len(s, *id).await, 1);
    }
    assert_eq!(s.task_enqueue_many(Vec::new()).await.unwrap(), Vec::new());
    assert_eq!(s.queue_size().await.unwrap(), 4);
}

/// With a limit of 3 ACCEPTED tasks: the 4th enqueue is refused, a batch
/// that would pass the limit is refused whole, a claim makes room again,
/// and 0 means no limit.
pub async fn enqueue_refuses_when_the_queue_is_full(db: impl TestDb) {
    let limited = db
        .open(StoreOptions {
            max_queue_size: 3,
            ..StoreOptions::default()
        })
        .await;
    let t = register(&limited, task_type("q")).await;
    for i in 0..3 {
        enqueue(&limited, &t, &format!("t{i}")).await;
    }
    let err = limited
        .task_enqueue(NewTask::new(t.clone(), ident("t3")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::QueueFull { limit: 3 }), "{err:?}");
    assert!(matches!(
        limited
            .task_get(&TaskRef::Key(t.clone(), ident("t3")))
            .await,
        Err(Error::TaskNotFound(_))
    ));

    claim_one(&limited, DAEMON_A).await;
    let two = vec![
        NewTask::new(t.clone(), ident("x")),
        NewTask::new(t.clone(), ident("y")),
    ];
    assert!(matches!(
        limited.task_enqueue_many(two).await,
        Err(Error::QueueFull { .. })
    ));
    assert_eq!(limited.queue_size().await.unwrap(), 2);
    enqueue(&limited, &t, "t3").await;
    assert_eq!(limited.queue_size().await.unwrap(), 3);

    let unlimited = db
        .open(StoreOptions {
            max_queue_size: 0,
            ..StoreOptions::default()
        })
        .await;
    let many: Vec<_> = (0..50)
        .map(|i| NewTask::new(t.clone(), ident(&format!("u{i}"))))
        .collect();
    unlimited.task_enqueue_many(many).await.unwrap();
    assert_eq!(unlimited.queue_size().await.unwrap(), 53);
    assert_queue_consistent(&unlimited).await;
}

/// A duplicate is refused as a duplicate even when the queue is full too
/// (alone, in a batch, or repeated within a batch): a producer resending a
/// task it enqueued learns that it is in. Found by the model-based test,
/// where SQLite answered `QueueFull` and PostgreSQL `DuplicateTask`.
pub async fn a_duplicate_is_refused_as_such_even_when_the_queue_is_full(db: impl TestDb) {
    let full = db
        .open(StoreOptions {
            max_queue_size: 1,
            ..StoreOptions::default()
        })
        .await;
    let t = register(&full, task_type("q")).await;
    enqueue(&full, &t, "in").await;
    let again = full
        .task_enqueue(NewTask::new(t.clone(), ident("in")))
        .await;
    assert!(
        matches!(&again, Err(Error::DuplicateTask { identifier, .. }) if identifier == "in"),
        "{again:?}"
    );
    for batch in [
        vec![ident("new"), ident("in")],
        vec![ident("twice"), ident("twice")],
    ] {
        let tasks = batch
            .iter()
            .map(|i| NewTask::new(t.clone(), i.clone()))
            .collect();
        let refused = full.task_enqueue_many(tasks).await;
        assert!(
            matches!(&refused, Err(Error::DuplicateTask { .. })),
            "{batch:?}: {refused:?}"
        );
    }
    // Without a duplicate, the queue limit speaks.
    let new = full
        .task_enqueue(NewTask::new(t.clone(), ident("new")))
        .await;
    assert!(matches!(new, Err(Error::QueueFull { limit: 1 })), "{new:?}");
    assert_eq!(full.queue_size().await.unwrap(), 1);
    assert_queue_consistent(&full).await;
}

/// An input whose JSON is larger than the handle's limit is refused.
pub async fn enqueue_refuses_an_input_over_the_limit(db: impl TestDb) {
    let small = db
        .open(StoreOptions {
            max_input_bytes: 100,
            ..StoreOptions::default()
        })
        .await;
    let t = register(&small, task_type("big")).await;
    let err = small
        .task_enqueue(NewTask::new(t.clone(), ident("x")).with_input(json!("a".repeat(200))))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InputTooLarge {
                size: 202,
                limit: 100
            }
        ),
        "{err:?}"
    );
    small
        .task_enqueue(NewTask::new(t.clone(), ident("x")).with_input(json!("a".repeat(90))))
        .await
        .unwrap();
    assert_eq!(small.task_counts().await.unwrap().total(), 1);
}

/// Identifiers with '/', quotes, spaces and non-ASCII come back byte for
/// byte and are found by key.
pub async fn identifiers_round_trip_exactly(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("odd type/ü \"x\"")).await;
    let odd = [
        "a/b/c",
        "it's \"quoted\"",
        "inner space",
        "ünïcødé ☃ 日本",
        "%2F%20",
        "'; DROP TABLE atp_task; --",
        &"é".repeat(64),
    ];
    for id in odd {
        let task = enqueue(s, &t, id).await;
        assert_eq!(task.identifier.as_str(), id);
        let found = s
            .task_get(&TaskRef::Key(t.clone(), ident(id)))
            .await
            .unwrap();
        assert_eq!(found.id, task.id);
        assert_eq!(found.identifier.as_str(), id);
        assert_eq!(found.task_type, t);
    }
    assert_eq!(s.task_counts().await.unwrap().total(), odd.len() as u64);
}

/// A producer with no natural identifier enqueues with a generated one
/// (`NewTask::generated`): it is stored and found as given, later ones sort
/// after earlier ones, sending the same task again is a duplicate (the
/// identifier was made before the store saw it), and a batch of them is
/// still all or nothing.
pub async fn enqueue_with_a_generated_identifier(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("anon")).await;
    let new = NewTask::generated(t.clone()).with_input(json!({"n": 1}));
    let first = s.task_enqueue(new.clone()).await.unwrap();
    assert_eq!(first.identifier, new.identifier);
    assert_eq!(first.status, Status::Accepted);
    assert_eq!(s.task_get(&first.key()).await.unwrap(), first);
    assert_eq!(s.task_input(&first.key()).await.unwrap(), json!({"n": 1}));
    let err = s.task_enqueue(new).await.unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateTask { identifier, .. } if identifier == first.identifier.as_str()),
        "{err:?}"
    );
    let second = s.task_enqueue(NewTask::generated(t.clone())).await.unwrap();
    assert!(first.identifier < second.identifier, "sorted by time");
    enqueue(s, &t, "named").await;

    // A batch with a bad task among generated ones adds nothing.
    let mut refused: Vec<NewTask> = (0..3).map(|_| NewTask::generated(t.clone())).collect();
    refused.push(NewTask::new(t.clone(), ident("named")));
    let err = s.task_enqueue_many(refused.clone()).await.unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateTask { identifier, .. } if identifier == "named"),
        "{err:?}"
    );
    for task in &refused[..3] {
        assert!(matches!(
            s.task_get(&TaskRef::Key(t.clone(), task.identifier.clone()))
                .await,
            Err(Error::TaskNotFound(_))
        ));
    }
    assert_eq!(s.task_counts().await.unwrap().total(), 3);

    let batch: Vec<NewTask> = (0..3).map(|_| NewTask::generated(t.clone())).collect();
    let ids = s.task_enqueue_many(batch.clone()).await.unwrap();
    assert_eq!(ids.len(), 3);
    for (id, given) in ids.iter().zip(&batch) {
        let task = s.task_get(&TaskRef::Id(*id)).await.unwrap();
        assert_eq!(task.identifier, given.identifier);
        assert!(second.identifier < task.identifier);
        assert_eq!(log_len(s, *id).await, 1);
    }
    assert!(batch.windows(2).all(|w| w[0].identifier < w[1].identifier));
    assert_eq!(s.queue_size().await.unwrap(), 6);
    assert_queue_consistent(s).await;
}
