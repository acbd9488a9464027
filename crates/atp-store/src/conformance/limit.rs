//! Contract: a type's limit of running tasks (`max_running`). At most that
//! many of its tasks are held (SCHEDULED, RUNNING, PAUSED) at once, by
//! every claim path, under any number of concurrent claimers; other types
//! are claimed as before.

use std::sync::Arc;

use atp_core::store::ClaimParams;
use atp_core::{Status, StatusChange, Store};

use super::*;
use crate::testing::TestDb;

/// Held tasks of `t`.
async fn held<S: Store>(s: &S, t: &TypeName) -> usize {
    let mut n = 0;
    for status in Status::HELD {
        let page = s
            .task_list(&atp_core::TaskFilter {
                status: Some(status),
                task_type: Some(t.clone()),
                limit: 1000,
                ..atp_core::TaskFilter::default()
            })
            .await
            .unwrap();
        n += page.tasks.len();
    }
    n
}

/// Every claim path stops at the limit, counting paused tasks (still
/// held); an end frees a place; other types' tasks are claimed beside; the
/// limit can be raised and removed.
pub async fn a_limited_type_is_never_claimed_beyond_its_limit(db: impl TestDb) {
    let s = db.store();
    let limited = register(s, task_type("limited").with_max_running(2)).await;
    let free = register(s, task_type("free")).await;
    assert_eq!(
        s.task_type_get(&limited).await.unwrap().max_running,
        Some(2)
    );
    for i in 0..6 {
        enqueue(s, &limited, &format!("l{i}")).await;
    }
    for i in 0..3 {
        enqueue(s, &free, &format!("f{i}")).await;
    }
    let first = s.task_claim(&ClaimParams::new(DAEMON_A, 10)).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|c| c.identifier.as_str()).collect();
    assert_eq!(
        ids,
        ["l0", "l1", "f0", "f1", "f2"],
        "FIFO, two of the limited"
    );
    for path in 0..3 {
        let params = ClaimParams::new(DAEMON_B, 10);
        let got = match path {
            0 => s.task_claim(&params).await.unwrap().len(),
            1 => s.task_claim_start(&params).await.unwrap().len(),
            _ => s
                .task_claim_start(&params.with_types(vec![limited.clone()]))
                .await
                .unwrap()
                .len(),
        };
        assert_eq!(got, 0, "path {path} went over the limit");
    }
    // A paused task keeps its place; its end frees it.
    let a = s.task_start(first[0].attempt).await.unwrap().attempt;
    s.task_set_status(StatusChange::pause(a, "wait"))
        .await
        .unwrap();
    assert!(
        s.task_claim(&ClaimParams::new(DAEMON_B, 10))
            .await
            .unwrap()
            .is_empty()
    );
    s.task_set_status(StatusChange::finish(a, "done"))
        .await
        .unwrap();
    let next = s
        .task_claim_start(&ClaimParams::new(DAEMON_B, 10).with_types(vec![limited.clone()]))
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].identifier.as_str(), "l2");
    assert_eq!(held(s, &limited).await, 2);
    // Raised, then removed: the claim takes more at once.
    register(s, task_type("limited").with_max_running(3)).await;
    assert_eq!(
        s.task_claim(&ClaimParams::new(DAEMON_B, 10))
            .await
            .unwrap()
            .len(),
        1
    );
    register(s, task_type("limited")).await;
    assert_eq!(s.task_type_get(&limited).await.unwrap().max_running, None);
    assert_eq!(
        s.task_claim(&ClaimParams::new(DAEMON_B, 10))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_queue_consistent(s).await;
}

/// Sixteen claimers at once, over and over, with a type limited to three,
/// while producers add ever more urgent tasks of it (so that claims that
/// started a moment apart see different heads of the queue, the case a
/// count without a lock gets wrong): no round ever holds more than three
/// of its tasks, and every task is claimed once in the end.
pub async fn concurrent_claimers_never_exceed_a_types_limit(db: impl TestDb) {
    let s = db.store();
    let t = register(s, task_type("limited").with_max_running(3)).await;
    let tasks = (0..40)
        .map(|i| atp_core::NewTask::new(t.clone(), ident(&format!("t{i}"))))
        .collect();
    s.task_enqueue_many(tasks).await.unwrap();
    let mut done = 0;
    let mut total = 40;
    let mut round_no = 0;
    while done < total {
        round_no += 1;
        let start = Arc::new(tokio::sync::Barrier::new(20));
        let mut producers = Vec::new();
        if round_no <= 10 {
            for p in 0..4 {
                let (s, start, t) = (s.clone(), start.clone(), t.clone());
                producers.push(tokio::spawn(async move {
                    start.wait().await;
                    let id = ident(&format!("urgent-{round_no}-{p}"));
                    s.task_enqueue(atp_core::NewTask::new(t, id).with_priority(round_no))
                        .await
                        .unwrap();
                }));
            }
            total += 4;
        } else {
            for _ in 0..4 {
                let start = start.clone();
                producers.push(tokio::spawn(async move {
                    start.wait().await;
                }));
            }
        }
        let mut claimers = Vec::new();
        for i in 0..16u64 {
            let (s, start, t) = (s.clone(), start.clone(), t.clone());
            claimers.push(tokio::spawn(async move {
                start.wait().await;
                let params = ClaimParams::new(DaemonId(0xD000 + i), 2);
                if i % 2 == 0 {
                    s.task_claim_start(&params.with_types(vec![t]))
                        .await
                        .unwrap()
                } else {
                    s.task_claim_start(&params).await.unwrap()
                }
            }));
        }
        let mut round = Vec::new();
        for c in claimers {
            round.extend(c.await.unwrap());
        }
        for p in producers {
            p.await.unwrap();
        }
        assert!(round.len() <= 3, "{} held at once", round.len());
        assert!(held(s, &t).await <= 3);
        for task in round {
            s.task_set_status(StatusChange::finish(task.attempt, "ok"))
                .await
                .unwrap();
            done += 1;
        }
    }
    let counts = s.task_counts().await.unwrap();
    assert_eq!(counts.status(Status::Finished) as usize, total);
}
