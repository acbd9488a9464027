//! Contract: what the store's boundary makes of odd text and of its options.

use atp_core::store::ClaimParams;
use atp_core::{NewTask, Progress, Status, StatusChange, Store, StoreExt, StoreOptions, TaskRef};
use serde_json::json;

use super::*;
use crate::testing::TestDb;

/// NUL characters (PostgreSQL's text refuses them) in any message a store
/// writes, whoever wrote it (a producer, a claimer, a handler's failure
/// built from a program's stderr, its progress, an operator), become
/// U+FFFD, so no write is ever refused for them.
pub async fn nul_characters_in_messages_become_replacement_characters(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let task = s
        .task_enqueue(NewTask::new(t.clone(), ident("x")).with_message("in\0put"))
        .await
        .unwrap();
    let mut claim = ClaimParams::new(DAEMON_A, 1);
    claim.message = "claimed\0".into();
    let claimed = s.task_claim(&claim).await.unwrap();
    let a = s.task_start(claimed[0].attempt).await.unwrap().attempt;
    s.task_progress(
        a,
        &Progress {
            percent: None,
            message: "half\0way".into(),
        },
    )
    .await
    .unwrap();
    let progress = s.task_get(&TaskRef::Id(a.task)).await.unwrap().progress;
    assert_eq!(progress.unwrap().message, "half\u{FFFD}way");
    s.task_set_status(StatusChange::fail(a, "stderr: \0\0"))
        .await
        .unwrap();
    s.task_reenqueue(&TaskRef::Id(task.id), "again\0")
        .await
        .unwrap();
    let messages: Vec<_> = s
        .task_log(&TaskRef::Id(task.id))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.status, r.message))
        .collect();
    assert_eq!(
        messages,
        [
            (Status::Accepted, "in\u{FFFD}put".to_owned()),
            (Status::Scheduled, "claimed\u{FFFD}".to_owned()),
            (Status::Running, atp_core::messages::started(DAEMON_A, 1, 3)),
            (Status::Failed, "stderr: \u{FFFD}\u{FFFD}".to_owned()),
            (Status::Accepted, "again\u{FFFD}".to_owned()),
        ]
    );
    // Claim and start in one call write the claimer's message the same way.
    let started = s.task_claim_start(&claim).await.unwrap();
    let log = s
        .task_log(&TaskRef::Id(started[0].attempt.task))
        .await
        .unwrap();
    assert_eq!(log[log.len() - 2].message, "claimed\u{FFFD}");
    assert_queue_consistent(s).await;
}

/// A JSON input holding a NUL character (escaped in JSON text) is stored and
/// handed to the handler exactly as given.
pub async fn an_input_with_a_nul_character_round_trips(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let input = json!({ "text": "a\u{0}b", "list": ["\u{0}"] });
    let task = s
        .task_enqueue(NewTask::new(t, ident("x")).with_input(input.clone()))
        .await
        .unwrap();
    assert_eq!(s.task_input(&TaskRef::Id(task.id)).await.unwrap(), input);
    let started = s
        .task_claim_start(&ClaimParams::new(DAEMON_A, 1))
        .await
        .unwrap();
    assert_eq!(started[0].input, input);
}

/// A handle with a pool of one connection still serves many calls at once:
/// they take turns.
pub async fn a_pool_of_one_connection_serves_concurrent_calls(db: impl TestDb) {
    let s = db
        .open(StoreOptions {
            pool_size: 1,
            ..StoreOptions::default()
        })
        .await;
    let t = register(&s, task_type("t")).await;
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            let t = t.clone();
            tokio::spawn(async move {
                s.task_enqueue(NewTask::new(t, ident(&format!("x{i}"))))
                    .await
                    .unwrap();
                s.task_counts().await.unwrap().total()
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap() >= 1);
    }
    assert_eq!(s.queue_size().await.unwrap(), 8);
    assert_eq!(s.options().pool_size, 1);
}
