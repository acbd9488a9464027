//! Contract: finding work, and what ended badly: the search by identifier
//! prefix, listings with each task's last message, and the operator's bulk
//! re-enqueue.

use std::collections::BTreeSet;

use atp_core::{
    BulkReenqueue, Error, Status, StatusChange, Store, StoreExt, StoreOptions, TaskFilter, messages,
};

use super::*;
use crate::testing::TestDb;

/// Every page of `filter` (two tasks a page), as identifiers, checking that
/// no task comes twice.
async fn all_pages<S: Store>(s: &S, mut filter: TaskFilter) -> Vec<String> {
    filter.limit = 2;
    let mut seen = Vec::new();
    loop {
        let page = s.task_list(&filter).await.expect("listing");
        seen.extend(page.tasks);
        match page.next {
            Some(next) => filter.after = Some(next),
            None => break,
        }
    }
    let unique: BTreeSet<_> = seen.iter().map(|t| t.id).collect();
    assert_eq!(unique.len(), seen.len(), "a task came twice: {seen:?}");
    seen.into_iter().map(|t| t.identifier.to_string()).collect()
}

/// A prefix matches exactly the identifiers that start with it, character
/// for character: `%`, `_` and `\` are no wildcards or escapes, case
/// matters, non-ASCII and the last code point work, the empty prefix is no
/// filter; with and without a type, paged.
pub async fn list_by_identifier_prefix_matches_exactly_what_starts_with_it(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let u = register(s, task_type("u")).await;
    let ids = [
        "a",
        "ab",
        "abc",
        "abd",
        "ac",
        "b",
        "a%c",
        "a%",
        "axc",
        "a_c",
        "aXc",
        "a\\c",
        "a\\",
        "AB",
        "Ab",
        "é1",
        "é2",
        "e1",
        "ê",
        "日本",
        "日本語",
        "\u{10FFFF}",
        "\u{10FFFF}x",
        "\u{D7FF}z",
        "\u{E000}",
    ];
    for id in ids {
        enqueue(s, &t, id).await;
    }
    for id in ["ab", "abz", "zz"] {
        enqueue(s, &u, id).await;
    }
    let prefixes = [
        "a",
        "ab",
        "a%",
        "a_",
        "a\\",
        "A",
        "é",
        "日本",
        "\u{10FFFF}",
        "\u{D7FF}",
        "zzz",
        "abc",
    ];
    for prefix in prefixes {
        for task_type in [None, Some(t.clone())] {
            let mut expected: Vec<&str> = ids.to_vec();
            if task_type.is_none() {
                expected.extend(["ab", "abz", "zz"]);
            }
            let mut expected: Vec<String> = expected
                .into_iter()
                .filter(|id| id.starts_with(prefix))
                .map(str::to_owned)
                .collect();
            let filter = TaskFilter {
                identifier_prefix: Some(prefix.to_owned()),
                task_type: task_type.clone(),
                ..TaskFilter::default()
            };
            let mut found = all_pages(s, filter).await;
            found.sort();
            expected.sort();
            assert_eq!(found, expected, "prefix {prefix:?}, type {task_type:?}");
        }
    }
    // The empty prefix is no filter; a status still applies beside a prefix.
    let empty = TaskFilter {
        identifier_prefix: Some(String::new()),
        ..TaskFilter::default()
    };
    assert_eq!(all_pages(s, empty).await.len(), ids.len() + 3);
    let none = TaskFilter {
        identifier_prefix: Some("a".into()),
        status: Some(Status::Failed),
        ..TaskFilter::default()
    };
    assert!(all_pages(s, none).await.is_empty());
    // Newest first, as without a prefix.
    let page = s
        .task_list(&TaskFilter {
            identifier_prefix: Some("ab".into()),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    let order: Vec<_> = page.tasks.iter().map(|t| (t.updated_at, t.id)).collect();
    assert!(order.windows(2).all(|w| w[0] > w[1]), "{order:?}");
}

/// A listing with last messages lists what `task_list` lists, in its
/// order and pages, each task with its newest log record's message.
pub async fn list_with_last_message_gives_each_tasks_newest_log_line(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    for (id, why) in [("one", "boom 1"), ("two", "boom <2> & 'quoted'")] {
        let a = running(s, &t, id, DAEMON_A).await;
        s.task_set_status(StatusChange::fail(a, why)).await.unwrap();
    }
    let running = running(s, &t, "running", DAEMON_A).await;
    enqueue(s, &t, "queued").await;

    let failed = s
        .task_list_with_last_message(&TaskFilter {
            status: Some(Status::Failed),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    let got: Vec<_> = failed
        .tasks
        .iter()
        .map(|t| (t.task.identifier.as_str(), t.last_message.as_str()))
        .collect();
    assert_eq!(got, [("two", "boom <2> & 'quoted'"), ("one", "boom 1")]);

    let mut filter = TaskFilter {
        limit: 3,
        ..TaskFilter::default()
    };
    let plain = s.task_list(&filter).await.unwrap();
    let with = s.task_list_with_last_message(&filter).await.unwrap();
    assert_eq!(
        with.tasks.iter().map(|t| &t.task).collect::<Vec<_>>(),
        plain.tasks.iter().collect::<Vec<_>>()
    );
    assert_eq!(with.next, plain.next);
    filter.after = with.next;
    let rest = s.task_list_with_last_message(&filter).await.unwrap();
    assert_eq!(rest.tasks.len(), 1);
    assert_eq!(rest.next, None);
    for shown in with.tasks.iter().chain(&rest.tasks) {
        let log = s.task_log(&shown.task.key()).await.unwrap();
        assert_eq!(shown.last_message, log.last().unwrap().message);
    }
    let held = with
        .tasks
        .iter()
        .find(|t| t.task.id == running.task)
        .unwrap();
    assert_eq!(held.task.status, Status::Running);
}

/// Fails a new task of type `t` after one start.
async fn failed<S: Store>(s: &S, t: &TypeName, id: &str) -> Attempt {
    let a = running(s, t, id, DAEMON_A).await;
    s.task_set_status(StatusChange::fail(a, "boom"))
        .await
        .unwrap();
    a
}

/// A bulk re-enqueue puts every task in the status (of the type, if given)
/// back in the queue as a single re-enqueue would: starts reset, no holder,
/// logged, counted into the queue, beyond the queue limit, later changes of
/// the old holder stale; and says how many.
pub async fn bulk_reenqueue_moves_every_task_in_the_status_and_counts_them(db: impl TestDb) {
    let s = db
        .open(StoreOptions {
            max_queue_size: 2,
            ..StoreOptions::default()
        })
        .await;
    let s = &s;
    let t = register(s, task_type("t").with_max_starts(1)).await;
    let u = register(s, task_type("u")).await;
    let mut of_t = Vec::new();
    for id in ["1", "2", "3"] {
        of_t.push(failed(s, &t, id).await);
    }
    let of_u = failed(s, &u, "1").await;
    let done = running(s, &t, "done", DAEMON_A).await;
    s.task_set_status(StatusChange::finish(done, "ok"))
        .await
        .unwrap();
    enqueue(s, &t, "queued").await;

    let bulk = |status, task_type: Option<&TypeName>, message: &str| BulkReenqueue {
        status,
        task_type: task_type.cloned(),
        message: message.to_owned(),
    };
    // Three tasks into a queue of limit 2 that holds one: the limit is for
    // producers, not operators.
    let n = s
        .task_reenqueue_all(&bulk(Status::Failed, Some(&t), ""))
        .await
        .unwrap();
    assert_eq!(n, 3);
    for a in &of_t {
        let task = s.task_get(&TaskRef::Id(a.task)).await.unwrap();
        assert_eq!(
            (task.status, task.starts, task.holder),
            (Status::Accepted, 0, None)
        );
        let log = s.task_log(&task.key()).await.unwrap();
        let last = log.last().unwrap();
        assert_eq!(
            (last.status, last.message.as_str()),
            (Status::Accepted, messages::REENQUEUED)
        );
        assert_eq!(
            log.len(),
            5,
            "accepted, scheduled, running, failed, re-enqueued"
        );
    }
    assert_eq!(status_of(s, of_u.task).await, Status::Failed);
    assert_eq!(status_of(s, done.task).await, Status::Finished);
    assert_eq!(s.queue_size().await.unwrap(), 4);
    assert_queue_consistent(s).await;

    // Every type, with a message; then nothing is left to move.
    let n = s
        .task_reenqueue_all(&bulk(Status::Failed, None, "operator: retry all"))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let log = s.task_log(&TaskRef::Id(of_u.task)).await.unwrap();
    assert_eq!(log.last().unwrap().message, "operator: retry all");
    let n = s
        .task_reenqueue_all(&bulk(Status::Failed, None, ""))
        .await
        .unwrap();
    assert_eq!(n, 0);

    // A running task's holder is fenced off, as after a single re-enqueue.
    let claimed = s
        .task_claim(&atp_core::ClaimParams::new(DAEMON_B, 1))
        .await
        .unwrap();
    let held = s.task_start(claimed[0].attempt).await.unwrap().attempt;
    let n = s
        .task_reenqueue_all(&bulk(Status::Running, None, ""))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let err = s
        .task_set_status(StatusChange::finish(held, "late"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StaleAttempt { .. }), "{err:?}");
    assert_queue_consistent(s).await;
}

/// A bulk re-enqueue of ACCEPTED tasks, or of an unknown type, is refused
/// and changes nothing.
pub async fn bulk_reenqueue_refuses_accepted_and_unknown_types(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("t")).await;
    let a = failed(s, &t, "failed").await;
    let queued = enqueue(s, &t, "queued").await;
    let before = (
        s.task_log(&TaskRef::Id(a.task)).await.unwrap(),
        s.task_log(&queued.key()).await.unwrap(),
        s.queue_size().await.unwrap(),
    );
    let err = s
        .task_reenqueue_all(&BulkReenqueue {
            status: Status::Accepted,
            task_type: Some(t.clone()),
            message: String::new(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(err.to_string().contains("ACCEPTED"), "{err}");
    let err = s
        .task_reenqueue_all(&BulkReenqueue {
            status: Status::Failed,
            task_type: Some(type_name("missing")),
            message: String::new(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TypeNotFound(_)), "{err:?}");
    let after = (
        s.task_log(&TaskRef::Id(a.task)).await.unwrap(),
        s.task_log(&queued.key()).await.unwrap(),
        s.queue_size().await.unwrap(),
    );
    assert_eq!(after, before);
    assert_eq!(status_of(s, a.task).await, Status::Failed);
}
