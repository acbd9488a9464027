//! Contract: pausing a type. The claim itself skips paused types, so a
//! caller's list of types (read before the pause) cannot take their tasks.

use atp_core::store::ClaimParams;
use atp_core::{Error, Status, StatusChange, Store, StoreExt, StoreOptions, TaskRef};

use super::*;
use crate::testing::TestDb;

/// The identifiers a claim-and-start of `params` takes.
async fn claim_started<S: Store>(s: &S, params: ClaimParams) -> Vec<String> {
    s.task_claim_start(&params)
        .await
        .expect("claiming and starting")
        .into_iter()
        .map(|c| c.identifier.to_string())
        .collect()
}

/// While a type is paused no claim takes its tasks: not a plain one, not
/// one restricted to it, not a claim-and-start; other types' tasks are
/// claimed as usual; enqueues of the paused type are accepted; a task of it
/// that was already held goes on and ends normally.
pub async fn a_paused_types_tasks_are_not_claimed(db: impl TestDb) {
    let s = db.store();
    let a = register(s, task_type("a")).await;
    let b = register(s, task_type("b")).await;
    let held = running(s, &a, "held", DAEMON_A).await;
    for (t, id) in [(&a, "a1"), (&b, "b1"), (&a, "a2"), (&b, "b2"), (&b, "b3")] {
        enqueue(s, t, id).await;
    }

    let paused = s.task_type_set_paused(&a, true).await.unwrap();
    assert!(paused.paused);
    assert_eq!(paused.name, a);
    assert!(s.task_type_get(&a).await.unwrap().paused);
    assert!(!s.task_type_get(&b).await.unwrap().paused);
    let again = s.task_type_set_paused(&a, true).await.unwrap();
    assert!(again.paused, "pausing twice is harmless");

    let only = |types: Vec<_>| ClaimParams::new(DAEMON_B, 10).with_types(types);
    assert!(claimed(s, only(vec![a.clone()])).await.is_empty());
    assert!(claim_started(s, only(vec![a.clone()])).await.is_empty());
    assert_eq!(claimed(s, ClaimParams::new(DAEMON_B, 1)).await, ["b1"]);
    assert_eq!(
        claim_started(s, ClaimParams::new(DAEMON_B, 1)).await,
        ["b2"]
    );
    assert_eq!(
        claimed(s, only(vec![a.clone(), b.clone()])).await,
        ["b3"],
        "a claim naming a paused type takes only the others"
    );
    assert!(claimed(s, ClaimParams::new(DAEMON_B, 10)).await.is_empty());
    assert!(
        claim_started(s, ClaimParams::new(DAEMON_B, 10))
            .await
            .is_empty()
    );

    let late = enqueue(s, &a, "a3").await;
    assert_eq!(late.status, Status::Accepted);
    assert_eq!(s.queue_size().await.unwrap(), 3, "a1, a2 and a3 wait");
    for id in ["a1", "a2", "a3"] {
        let task = s.task_get(&TaskRef::Key(a.clone(), ident(id))).await;
        assert_eq!(task.unwrap().status, Status::Accepted, "{id}");
    }

    s.task_set_status(StatusChange::finish(held, "done while paused"))
        .await
        .unwrap();
    assert_eq!(status_of(s, held.task).await, Status::Finished);
    assert_queue_consistent(s).await;
}

/// A resume makes the type's tasks claimable again, in FIFO order with
/// everyone else's, the ones enqueued while it was paused included.
pub async fn resume_makes_a_paused_types_tasks_claimable_in_fifo_order(db: impl TestDb) {
    let s = db.store();
    let a = register(s, task_type("a")).await;
    let b = register(s, task_type("b")).await;
    enqueue(s, &a, "1").await;
    s.task_type_set_paused(&a, true).await.unwrap();
    enqueue(s, &b, "2").await;
    enqueue(s, &a, "3").await;
    enqueue(s, &b, "4").await;
    assert!(
        claimed(
            s,
            ClaimParams::new(DAEMON_A, 10).with_types(vec![a.clone()])
        )
        .await
        .is_empty()
    );

    let resumed = s.task_type_set_paused(&a, false).await.unwrap();
    assert!(!resumed.paused);
    assert!(!s.task_type_get(&a).await.unwrap().paused);
    assert_eq!(
        claimed(s, ClaimParams::new(DAEMON_A, 3)).await,
        ["1", "2", "3"]
    );
    assert_eq!(
        claim_started(s, ClaimParams::new(DAEMON_A, 10)).await,
        ["4"]
    );
    assert_eq!(s.queue_size().await.unwrap(), 0);
    assert_queue_consistent(s).await;
}

/// The pause is kept in the database: another handle (a daemon on another
/// host, or after a restart) sees it and claims nothing of the type; a
/// re-registration keeps it, whatever its `paused` says; a new type starts
/// as registered.
pub async fn a_pause_survives_reopening_and_re_registering(db: impl TestDb) {
    let s = db.store();
    let a = register(s, task_type("a")).await;
    enqueue(s, &a, "x").await;
    s.task_type_set_paused(&a, true).await.unwrap();
    drop(db.open(StoreOptions::default()).await);

    let reopened = db.open(StoreOptions::default()).await;
    assert!(reopened.task_type_get(&a).await.unwrap().paused);
    let listed = reopened.task_type_list().await.unwrap();
    assert_eq!(listed.iter().map(|t| t.paused).collect::<Vec<_>>(), [true]);
    assert!(
        claimed(&reopened, ClaimParams::new(DAEMON_A, 10))
            .await
            .is_empty()
    );

    let re_registered = task_type("a").with_timeout_secs(9.0);
    assert!(!re_registered.paused);
    register(&reopened, re_registered).await;
    let stored = reopened.task_type_get(&a).await.unwrap();
    assert!(stored.paused, "registering again does not resume");
    assert_eq!(stored.timeout_secs, 9.0, "and still updates the rest");
    assert!(
        claimed(&reopened, ClaimParams::new(DAEMON_A, 10))
            .await
            .is_empty()
    );

    s.task_type_set_paused(&a, false).await.unwrap();
    register(s, task_type("a").with_paused(true)).await;
    assert!(
        !s.task_type_get(&a).await.unwrap().paused,
        "registering again does not pause either"
    );

    let born_paused = register(s, task_type("born").with_paused(true)).await;
    assert!(s.task_type_get(&born_paused).await.unwrap().paused);
    enqueue(s, &born_paused, "y").await;
    assert_eq!(
        claimed(&reopened, ClaimParams::new(DAEMON_A, 10)).await,
        ["x"]
    );
}

/// Pausing or resuming a type that does not exist says so and creates
/// nothing.
pub async fn pausing_an_unknown_type_is_not_found(db: impl TestDb) {
    let s = db.store();
    let ghost = type_name("ghost");
    for paused in [true, false] {
        let err = s.task_type_set_paused(&ghost, paused).await.unwrap_err();
        assert!(
            matches!(&err, Error::TypeNotFound(n) if n == "ghost"),
            "{err:?}"
        );
    }
    assert!(s.task_type_list().await.unwrap().is_empty());
}
