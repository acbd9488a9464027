//! Contract: many callers at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atp_core::store::ClaimParams;
use atp_core::{DaemonId, Error, NewTask, Status, StatusChange, Store, StoreOptions};

use super::*;
use crate::testing::TestDb;

/// Tasks the concurrency cases drain.
pub const DRAIN_TASKS: usize = 10_000;
/// Concurrent claimers.
pub const CLAIMERS: u64 = 16;

/// 16 claimers drain 10,000 tasks (claim, start and finish in batches): every
/// task is claimed exactly once, none is lost, all end FINISHED.
pub async fn concurrent_claimers_take_each_task_exactly_once(db: impl TestDb) {
    let s = db.store().clone();
    let t = register(&s, task_type("drain")).await;
    let unlimited = db
        .open(StoreOptions {
            max_queue_size: 0,
            ..StoreOptions::default()
        })
        .await;
    for chunk in (0..DRAIN_TASKS).collect::<Vec<_>>().chunks(1_000) {
        let batch = chunk
            .iter()
            .map(|i| NewTask::new(t.clone(), ident(&format!("task-{i}"))))
            .collect();
        unlimited.task_enqueue_many(batch).await.unwrap();
    }
    let seen: Arc<Mutex<HashMap<i64, u64>>> = Arc::default();
    let mut claimers = Vec::new();
    for c in 0..CLAIMERS {
        let s = s.clone();
        let seen = Arc::clone(&seen);
        claimers.push(tokio::spawn(async move {
            let holder = DaemonId(0xC000 + c);
            let batch = 1 + (c % 8) as u32;
            loop {
                let claimed = s
                    .task_claim(&ClaimParams::new(holder, batch))
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    return;
                }
                {
                    let mut seen = seen.lock().unwrap();
                    for task in &claimed {
                        *seen.entry(task.attempt.task.0).or_default() += 1;
                    }
                }
                let attempts: Vec<_> = claimed.iter().map(|c| c.attempt).collect();
                for started in s.task_start_many(&attempts).await.unwrap() {
                    started.unwrap();
                }
                let done: Vec<_> = attempts
                    .iter()
                    .map(|a| StatusChange::finish(*a, "done"))
                    .collect();
                for result in s.task_set_status_many(&done).await.unwrap() {
                    result.unwrap();
                }
            }
        }));
    }
    for claimer in claimers {
        claimer.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), DRAIN_TASKS, "every task claimed");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "claimed more than once: {twice:?}");
    let counts = s.task_counts().await.unwrap();
    assert_eq!(counts.status(Status::Finished), DRAIN_TASKS as u64);
    assert_eq!(counts.total(), DRAIN_TASKS as u64);
    assert_eq!(s.queue_size().await.unwrap(), 0);
}

/// 16 callers drain 10,000 tasks with claim-and-start (then finish): every
/// task is started exactly once, by its first start, none is lost, and the
/// queue counter stays exact.
pub async fn concurrent_claim_starts_take_each_task_exactly_once(db: impl TestDb) {
    let s = db.store().clone();
    let t = register(&s, task_type("drain")).await;
    let unlimited = db
        .open(StoreOptions {
            max_queue_size: 0,
            ..StoreOptions::default()
        })
        .await;
    for chunk in (0..DRAIN_TASKS).collect::<Vec<_>>().chunks(1_000) {
        let batch = chunk
            .iter()
            .map(|i| NewTask::new(t.clone(), ident(&format!("task-{i}"))))
            .collect();
        unlimited.task_enqueue_many(batch).await.unwrap();
    }
    let seen: Arc<Mutex<HashMap<i64, u64>>> = Arc::default();
    let mut claimers = Vec::new();
    for c in 0..CLAIMERS {
        let s = s.clone();
        let seen = Arc::clone(&seen);
        claimers.push(tokio::spawn(async move {
            let holder = DaemonId(0xD000 + c);
            let batch = 1 + (c % 8) as u32 * 9;
            loop {
                let started = s
                    .task_claim_start(&ClaimParams::new(holder, batch))
                    .await
                    .unwrap();
                if started.is_empty() {
                    return;
                }
                assert!(started.len() <= batch as usize);
                {
                    let mut seen = seen.lock().unwrap();
                    for task in &started {
                        assert_eq!(task.attempt.holder, holder);
                        assert_eq!((task.start, task.attempt.lease), (1, 1));
                        *seen.entry(task.attempt.task.0).or_default() += 1;
                    }
                }
                let done: Vec<_> = started
                    .iter()
                    .map(|t| StatusChange::finish(t.attempt, "done"))
                    .collect();
                for result in s.task_set_status_many(&done).await.unwrap() {
                    result.unwrap();
                }
            }
        }));
    }
    for claimer in claimers {
        claimer.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), DRAIN_TASKS, "every task started");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "started more than once: {twice:?}");
    let counts = s.task_counts().await.unwrap();
    assert_eq!(counts.status(Status::Finished), DRAIN_TASKS as u64);
    assert_eq!(counts.total(), DRAIN_TASKS as u64);
    assert_eq!(s.queue_size().await.unwrap(), 0);
    assert_queue_consistent(&s).await;
    // A sample of logs: enqueued, scheduled, running, finished, in order.
    let mut ids: Vec<i64> = seen.into_keys().collect();
    ids.sort_unstable();
    for id in ids.iter().step_by(997) {
        let log = s
            .task_log(&atp_core::TaskRef::Id(atp_core::TaskId(*id)))
            .await
            .unwrap();
        let statuses: Vec<_> = log.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [
                Status::Accepted,
                Status::Scheduled,
                Status::Running,
                Status::Finished
            ]
        );
    }
}

/// Four clean-ups at once rescue each abandoned task exactly once.
pub async fn concurrent_cleanups_rescue_each_task_once(db: impl TestDb) {
    let (s, clock) = clocked(&db).await;
    let t = register(&s, task_type("t").with_timeout_secs(30.0)).await;
    let batch = (0..200)
        .map(|i| NewTask::new(t.clone(), ident(&format!("z{i}"))))
        .collect();
    s.task_enqueue_many(batch).await.unwrap();
    let claimed = s
        .task_claim(&ClaimParams::new(DAEMON_A, 200))
        .await
        .unwrap();
    let attempts: Vec<_> = claimed.iter().map(|c| c.attempt).collect();
    s.task_start_many(&attempts[..100]).await.unwrap();
    clock.advance(Duration::from_secs(31));

    let reapers: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.task_requeue_abandoned().await.unwrap() })
        })
        .collect();
    let mut rescued = Vec::new();
    for r in reapers {
        rescued.extend(r.await.unwrap());
    }
    let mut ids: Vec<_> = rescued.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    assert_eq!(rescued.len(), 200, "a task was rescued twice");
    assert_eq!(s.queue_size().await.unwrap(), 200);
    for a in &attempts {
        assert_eq!(
            log_len(&s, a.task).await,
            if a.task <= attempts[99].task { 4 } else { 3 }
        );
    }
    assert_queue_consistent(&s).await;
}

/// Eight producers racing for the last places: exactly the limit gets in.
pub async fn concurrent_producers_respect_the_queue_limit(db: impl TestDb) {
    let limited = db
        .open(StoreOptions {
            max_queue_size: 50,
            ..StoreOptions::default()
        })
        .await;
    let t = register(&limited, task_type("t")).await;
    assert_eq!(race_for_the_queue(&limited, &t, 8, 20, 50).await, 50);
    assert_eq!(limited.queue_size().await.unwrap(), 50);
    assert_queue_consistent(&limited).await;
}

/// 32 producers, each on a connection of its own, against a limit just
/// above what PostgreSQL's fast path allows for (its counter shards leave
/// room for 15 × 100 tasks in flight): the first enqueues take the fast
/// path, the rest the exact one, some switching when the queue fills
/// while they wait. Exactly the limit gets in, and the counters agree with
/// the table.
pub async fn thirty_two_producers_fill_the_queue_exactly_to_its_limit(db: impl TestDb) {
    const LIMIT: u64 = 1_700;
    let limited = db
        .open(StoreOptions {
            max_queue_size: LIMIT,
            pool_size: 32,
            ..StoreOptions::default()
        })
        .await;
    let t = register(&limited, task_type("t")).await;
    assert_eq!(race_for_the_queue(&limited, &t, 32, 64, LIMIT).await, LIMIT);
    assert_eq!(limited.queue_size().await.unwrap(), LIMIT);
    assert_queue_consistent(&limited).await;
}

/// `producers` tasks enqueue `each` tasks one at a time, all starting
/// together, into a queue limited to `limit`; returns how many got in
/// (every refusal must be `QueueFull`).
async fn race_for_the_queue<S: Store + Clone + 'static>(
    s: &S,
    t: &TypeName,
    producers: usize,
    each: usize,
    limit: u64,
) -> u64 {
    let start = Arc::new(tokio::sync::Barrier::new(producers));
    let producers: Vec<_> = (0..producers)
        .map(|p| {
            let (s, t, start) = (s.clone(), t.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mut accepted = 0;
                for i in 0..each {
                    let task = NewTask::new(t.clone(), ident(&format!("p{p}-{i}")));
                    match s.task_enqueue(task).await {
                        Ok(_) => accepted += 1,
                        Err(Error::QueueFull { limit: l }) if l == limit => {}
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
                accepted
            })
        })
        .collect();
    let mut accepted = 0;
    for p in producers {
        accepted += p.await.unwrap();
    }
    accepted
}
