//! Contract: task types.

use atp_core::{Error, Handler, NewTask, StatusChange, Store, StoreExt, TaskRef};

use super::*;
use crate::testing::TestDb;

/// Register inserts, a second register updates, get and list read back.
pub async fn type_is_registered_read_listed_and_updated(db: impl TestDb) {
    let s = db.store();
    let t = task_type("sum")
        .with_timeout_secs(12.5)
        .with_retention_secs(60.0)
        .with_max_starts(5);
    register(s, t.clone()).await;
    register(s, task_type("another")).await;
    assert_eq!(s.task_type_get(&t.name).await.unwrap(), t);

    let changed = t.clone().with_timeout_secs(1.0).with_max_starts(1);
    let changed = atp_core::TaskType {
        handler: Handler::new("exec:/bin/true").unwrap(),
        ..changed
    };
    register(s, changed.clone()).await;
    assert_eq!(s.task_type_get(&t.name).await.unwrap(), changed);

    let names: Vec<_> = s
        .task_type_list()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["another", "sum"]);
}

/// Limits out of range are refused before anything is written.
pub async fn type_with_bad_limits_is_refused(db: impl TestDb) {
    let s = db.store();
    for bad in [
        task_type("t").with_timeout_secs(0.0),
        task_type("t").with_timeout_secs(f64::NAN),
        task_type("t").with_max_starts(0),
        task_type("t").with_retention_secs(f64::INFINITY),
    ] {
        let err = s.task_type_upsert(&bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }
    assert!(s.task_type_list().await.unwrap().is_empty());
}

/// Every operation naming an unknown type says so.
pub async fn unknown_type_is_not_found_everywhere(db: impl TestDb) {
    let s = db.store();
    let ghost = type_name("ghost");
    assert!(matches!(s.task_type_get(&ghost).await, Err(Error::TypeNotFound(n)) if n == "ghost"));
    assert!(matches!(
        s.task_type_delete(&ghost, false).await,
        Err(Error::TypeNotFound(_))
    ));
    assert!(matches!(
        s.task_type_delete(&ghost, true).await,
        Err(Error::TypeNotFound(_))
    ));
    assert!(matches!(
        s.task_enqueue(NewTask::new(ghost.clone(), ident("x")))
            .await,
        Err(Error::TypeNotFound(_))
    ));
    let filter = atp_core::TaskFilter {
        task_type: Some(ghost),
        ..Default::default()
    };
    assert!(matches!(
        s.task_list(&filter).await,
        Err(Error::TypeNotFound(_))
    ));
    assert_eq!(s.queue_size().await.unwrap(), 0);
}

/// A type with tasks stays, and says how many it has.
pub async fn type_with_tasks_is_not_unregistered_without_force(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("busy")).await;
    enqueue(s, &t, "a").await;
    enqueue(s, &t, "b").await;
    let err = s.task_type_delete(&t, false).await.unwrap_err();
    assert!(
        matches!(err, Error::TypeHasTasks { tasks: 2, .. }),
        "{err:?}"
    );
    assert!(s.task_type_get(&t).await.is_ok());
    assert_eq!(s.queue_size().await.unwrap(), 2);

    let empty = register(s, task_type("empty")).await;
    assert_eq!(s.task_type_delete(&empty, false).await.unwrap(), 0);
    assert!(matches!(
        s.task_type_get(&empty).await,
        Err(Error::TypeNotFound(_))
    ));
}

/// Force deletes the tasks, their logs and responses, and fixes the queue.
pub async fn forced_unregister_deletes_tasks_and_all_they_own(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("doomed")).await;
    let keep = register(s, task_type("kept")).await;
    enqueue(s, &t, "queued").await;
    let a = running(s, &t, "done", DAEMON_A).await;
    s.task_set_status(
        StatusChange::finish(a, "ok").with_response(atp_core::Response::new("text/plain", "42")),
    )
    .await
    .unwrap();
    enqueue(s, &keep, "other").await;

    assert_eq!(s.task_type_delete(&t, true).await.unwrap(), 2);
    assert!(matches!(
        s.task_type_get(&t).await,
        Err(Error::TypeNotFound(_))
    ));
    assert!(matches!(
        s.task_get(&TaskRef::Id(a.task)).await,
        Err(Error::TaskNotFound(_))
    ));
    assert_eq!(s.task_counts().await.unwrap().total(), 1);
    assert_eq!(s.queue_size().await.unwrap(), 1);
    assert_queue_consistent(s).await;
}
