//! The daemon embedded in a program: handlers' outcomes, panics, the
//! built-ins, fencing of a lost attempt, and clean shutdown, on each engine.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atp_core::{
    Handler, NewTask, Response, StartedTask, Status, Store, TaskId, TaskRef, TaskType, TypeName,
};
use atp_daemon::{
    AttemptSettled, Daemon, DaemonConfig, HandlerError, HandlerResult, Observer, Registry,
    Shutdown, TaskContext,
};
use atp_store::conformance::{ident, type_name};
use atp_store::testing::{TestDb, eventually};
use serde_json::{Value, json};

fn config() -> DaemonConfig {
    DaemonConfig {
        concurrency: 4,
        poll_interval: Duration::from_millis(20),
        heartbeat_interval: Duration::from_millis(200),
        cleanup_interval: Duration::from_millis(300),
        dead_after: Duration::from_secs(2),
        grace_period: Duration::from_secs(5),
        ..DaemonConfig::default()
    }
}

async fn register<S: Store>(s: &S, name: &str, handler: &str) -> TypeName {
    let mut t = TaskType::new(type_name(name), Handler::new(handler).unwrap());
    t.max_starts = 2;
    s.task_type_upsert(&t).await.unwrap();
    t.name
}

async fn enqueue<S: Store>(s: &S, t: &TypeName, id: &str, input: Value) -> TaskRef {
    s.task_enqueue(NewTask::new(t.clone(), ident(id)).with_input(input))
        .await
        .unwrap();
    TaskRef::Key(t.clone(), ident(id))
}

/// Waits until every task in `tasks` is FINISHED or FAILED.
async fn settled<S: Store>(s: &S, tasks: &[TaskRef]) {
    eventually(Duration::from_secs(30), "the tasks to settle", || async {
        for t in tasks {
            if !s.task_get(t).await.unwrap().status.is_terminal() {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// Waits until `task` has status `want`.
async fn reaches<S: Store>(s: &S, task: &TaskRef, want: Status) {
    eventually(Duration::from_secs(10), &format!("{want:?}"), || async {
        (s.task_get(task).await.unwrap().status == want).then_some(())
    })
    .await;
}

async fn last_message<S: Store>(s: &S, t: &TaskRef) -> String {
    s.task_log(t).await.unwrap().pop().unwrap().message
}

/// Runs `registry` on `db` until `work` returns, then stops the daemon and
/// checks it ends cleanly with nothing held.
async fn with_daemon<D, F, Fut>(db: &D, registry: Registry, work: F)
where
    D: TestDb,
    F: FnOnce(D::Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let daemon = Daemon::new(db.store().clone(), registry, config());
    run_daemon(db, daemon, work).await;
}

/// [`with_daemon`] with a daemon built by the caller.
async fn run_daemon<D, F, Fut>(db: &D, daemon: Daemon<D::Store>, work: F)
where
    D: TestDb,
    F: FnOnce(D::Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let shutdown = Shutdown::new();
    let run = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { daemon.run(shutdown).await })
    };
    work(db.store().clone()).await;
    shutdown.stop();
    run.await.unwrap().unwrap();
    assert!(db.store().daemon_list().await.unwrap().is_empty());
    let counts = db.store().task_counts().await.unwrap();
    for held in [Status::Scheduled, Status::Running, Status::Paused] {
        assert_eq!(counts.status(held), 0, "nothing held after a stop");
    }
}

async fn panics(_: TaskContext) -> HandlerResult {
    panic!("boom in a handler")
}

async fn errs(_: TaskContext) -> HandlerResult {
    Err(HandlerError::new("the disk is full"))
}

async fn returns(_: TaskContext) -> HandlerResult {
    Ok(())
}

async fn pauses(ctx: TaskContext) -> HandlerResult {
    ctx.pause("waiting for a licence").await?;
    ctx.resume("licence granted").await?;
    ctx.progress(Some(50.0), "half").await?;
    ctx.set_response(Response::new("application/json", "{\"ok\":true}"))
        .await?;
    Ok(())
}

/// Handler outcomes: return → FINISHED, error → FAILED with its text,
/// panic → FAILED (and the daemon lives on), explicit statuses logged.
async fn handler_outcomes_become_statuses(db: impl TestDb) {
    let mut registry = Registry::with_builtins();
    registry
        .register("app:panics", panics)
        .register("app:errs", errs)
        .register("app:returns", returns)
        .register("app:pauses", pauses);
    with_daemon(&db, registry, |s| async move {
        let p = register(&s, "p", "app:panics").await;
        let e = register(&s, "e", "app:errs").await;
        let r = register(&s, "r", "app:returns").await;
        let z = register(&s, "z", "app:pauses").await;
        let tasks = vec![
            enqueue(&s, &p, "1", json!(null)).await,
            enqueue(&s, &e, "1", json!(null)).await,
            enqueue(&s, &r, "1", json!(null)).await,
            enqueue(&s, &z, "1", json!(null)).await,
        ];
        settled(&s, &tasks).await;
        let status = |i: usize| {
            let s = s.clone();
            let t = tasks[i].clone();
            async move { s.task_get(&t).await.unwrap().status }
        };
        assert_eq!(status(0).await, Status::Failed);
        assert!(
            last_message(&s, &tasks[0])
                .await
                .contains("boom in a handler")
        );
        assert_eq!(status(1).await, Status::Failed);
        assert_eq!(last_message(&s, &tasks[1]).await, "the disk is full");
        assert_eq!(status(2).await, Status::Finished);
        assert_eq!(status(3).await, Status::Finished);
        let log: Vec<_> = s.task_log(&tasks[3]).await.unwrap();
        let seen: Vec<_> = log.iter().map(|l| (l.status, l.message.as_str())).collect();
        assert!(
            seen.contains(&(Status::Paused, "waiting for a licence")),
            "{seen:?}"
        );
        assert!(
            seen.contains(&(Status::Running, "licence granted")),
            "{seen:?}"
        );
        let got = s.task_response_get(&tasks[3]).await.unwrap().unwrap();
        assert_eq!(got.mime_type, "application/json");
        let task = s.task_get(&tasks[3]).await.unwrap();
        assert_eq!(task.progress.unwrap().percent, Some(50.0));
        // After a panic the daemon still runs tasks.
        let again = enqueue(&s, &r, "2", json!(null)).await;
        settled(&s, &[again]).await;
    })
    .await;
}

/// The original demo: sums numbers and numeric strings as text/plain;
/// anything else fails with the original message. Echo returns its input.
async fn builtins_sum_echo_and_fail(db: impl TestDb) {
    with_daemon(&db, Registry::with_builtins(), |s| async move {
        let sum = register(&s, "SequenceSum", "builtin:sum").await;
        let echo = register(&s, "Echo", "builtin:echo").await;
        let fail = register(&s, "Fail", "builtin:fail").await;
        let good = enqueue(&s, &sum, "good", json!([1, "2", 3.5])).await;
        let bad = enqueue(&s, &sum, "bad", json!([1, "two"])).await;
        let echoed = enqueue(&s, &echo, "e", json!({"a": [1, 2]})).await;
        let failed = enqueue(&s, &fail, "f", json!({"message": "as asked"})).await;
        settled(
            &s,
            &[good.clone(), bad.clone(), echoed.clone(), failed.clone()],
        )
        .await;
        let r = s.task_response_get(&good).await.unwrap().unwrap();
        assert_eq!(
            (r.mime_type.as_str(), r.body.as_slice()),
            ("text/plain", &b"6.5"[..])
        );
        assert_eq!(s.task_get(&bad).await.unwrap().status, Status::Failed);
        assert_eq!(
            last_message(&s, &bad).await,
            atp_daemon::builtin::SUM_INPUT_ERROR
        );
        let r = s.task_response_get(&echoed).await.unwrap().unwrap();
        assert_eq!(r.mime_type, "application/json");
        assert_eq!(
            serde_json::from_slice::<Value>(&r.body).unwrap(),
            json!({"a": [1, 2]})
        );
        assert_eq!(last_message(&s, &failed).await, "as asked");
    })
    .await;
}

/// A daemon claims only types whose handler it can run: a task of a type
/// it cannot run stays queued for another daemon. (Theirs is older than
/// ours and the claim is FIFO with room for both, so had it been claimable
/// it would have gone with ours: no need to wait and see.)
async fn only_runnable_types_are_claimed(db: impl TestDb) {
    let mut registry = Registry::empty();
    registry.register("app:returns", returns);
    with_daemon(&db, registry, |s| async move {
        let mine = register(&s, "mine", "app:returns").await;
        let other = register(&s, "other", "app:elsewhere").await;
        let theirs = enqueue(&s, &other, "x", json!(null)).await;
        let ours = enqueue(&s, &mine, "x", json!(null)).await;
        settled(&s, &[ours]).await;
        assert_eq!(s.task_get(&theirs).await.unwrap().status, Status::Accepted);
    })
    .await;
}

/// Many tasks on one daemon: all finish, none twice, never more than
/// `concurrency` at once.
async fn runs_many_tasks_within_its_concurrency(db: impl TestDb) {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::empty();
    {
        let (now, peak, runs) = (now.clone(), peak.clone(), runs.clone());
        registry.register("app:count", move |_ctx: TaskContext| {
            let (now, peak, runs) = (now.clone(), peak.clone(), runs.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        });
    }
    with_daemon(&db, registry, |s| async move {
        let t = register(&s, "count", "app:count").await;
        let batch = (0..300)
            .map(|i| NewTask::new(t.clone(), ident(&format!("c{i}"))))
            .collect();
        s.task_enqueue_many(batch).await.unwrap();
        eventually(Duration::from_secs(60), "300 tasks to finish", || async {
            (s.task_counts().await.unwrap().status(Status::Finished) == 300).then_some(())
        })
        .await;
    })
    .await;
    assert_eq!(runs.load(Ordering::SeqCst), 300);
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=4).contains(&peak), "peak concurrency {peak}");
}

/// A task rescued from under a running attempt (here: an operator
/// re-enqueues it) is taken from the attempt: its later result is refused
/// and never overwrites the new state.
async fn a_lost_attempts_result_is_dropped(db: impl TestDb) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut registry = Registry::empty();
    {
        let gate = gate.clone();
        registry.register("app:slow", move |ctx: TaskContext| {
            let gate = gate.clone();
            async move {
                // Wait for the operator's re-enqueue (or the heartbeat
                // noticing it), then try to finish: the store must refuse
                // the first attempt's finish.
                tokio::select! {
                    permit = gate.acquire() => permit.expect("open gate").forget(),
                    () = ctx.cancelled() => {}
                }
                ctx.finish_with(Response::new("text/plain", "late"), "late finish")
                    .await
            }
        });
    }
    with_daemon(&db, registry, |s| async move {
        let t = register(&s, "slow", "app:slow").await;
        let task = enqueue(&s, &t, "x", json!(null)).await;
        reaches(&s, &task, Status::Running).await;
        s.task_reenqueue(&task, "operator says again")
            .await
            .unwrap();
        // One permit for the first attempt, one for the second.
        gate.add_permits(2);
        settled(&s, std::slice::from_ref(&task)).await;
        let log = s.task_log(&task).await.unwrap();
        // Two attempts ran; the first one's finish was refused, so there is
        // exactly one FINISHED record, after the second start.
        assert_eq!(
            log.iter().filter(|l| l.status == Status::Running).count(),
            2,
            "{log:?}"
        );
        // The first attempt's finish was refused: exactly one FINISHED.
        assert_eq!(
            log.iter().filter(|l| l.status == Status::Finished).count(),
            1,
            "{log:?}"
        );
    })
    .await;
}

/// A task the database says the daemon holds but that it does not run
/// (as when the reply to a claim was lost) is handed back within a few
/// heartbeats instead of waiting for its type's timeout.
async fn a_task_held_but_not_running_is_handed_back(db: impl TestDb) {
    let mut registry = Registry::empty();
    registry.register("app:returns", returns);
    with_daemon(&db, registry, |s| async move {
        // The daemon cannot run this type, so only our claim takes it.
        let other = register(&s, "orphan", "app:elsewhere").await;
        let task = enqueue(&s, &other, "o", json!(null)).await;
        let daemon = eventually(
            Duration::from_secs(10),
            "the daemon to register",
            || async { s.daemon_list().await.unwrap().first().map(|d| d.id) },
        )
        .await;
        let claimed = s
            .task_claim(&atp_core::ClaimParams::new(daemon, 1))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        reaches(&s, &task, Status::Accepted).await;
        assert!(last_message(&s, &task).await.contains("not running there"));
    })
    .await;
}

/// `builtin:sleep` reports its progress while it runs.
async fn sleep_reports_progress(db: impl TestDb) {
    with_daemon(&db, Registry::with_builtins(), |s| async move {
        let t = register(&s, "nap", "builtin:sleep").await;
        let task = enqueue(&s, &t, "n", json!({"seconds": 1.5})).await;
        let progress = eventually(Duration::from_secs(10), "progress", || async {
            s.task_get(&task).await.unwrap().progress
        })
        .await;
        let percent = progress.percent.unwrap();
        assert!(percent > 0.0 && percent < 100.0, "{progress:?}");
        assert!(
            progress.message.starts_with("slept 1 of 1.5 s"),
            "{progress:?}"
        );
        settled(&s, &[task]).await;
    })
    .await;
}

/// Counts what an [`Observer`] hears.
#[derive(Default)]
struct Counting {
    started: Mutex<Vec<StartedTask>>,
    finished: AtomicUsize,
    failed: AtomicUsize,
    accepted: AtomicUsize,
    /// Settled attempts by task and type, to check both are passed along.
    by_type: Mutex<Vec<(TaskId, TypeName, Status)>>,
    /// Settled attempts that did not name this daemon or the first start.
    odd: Mutex<Vec<String>>,
}

impl Observer for Counting {
    fn attempt_started(&self, task: &StartedTask) {
        self.started.lock().unwrap().push(task.clone());
    }

    fn attempt_settled(&self, end: &AttemptSettled<'_>) {
        let status = end.status;
        if end.attempt.holder != atp_store::conformance::DAEMON_A || end.start != 1 {
            self.odd.lock().unwrap().push(format!("{end:?}"));
        }
        let counter = match status {
            Status::Finished => &self.finished,
            Status::Failed => &self.failed,
            Status::Accepted => &self.accepted,
            other => panic!("settled as {other:?}"),
        };
        counter.fetch_add(1, Ordering::SeqCst);
        self.by_type
            .lock()
            .unwrap()
            .push((end.attempt.task, end.task_type.clone(), status));
    }
}

/// Fails its task itself, then returns an error too: one FAILED end.
async fn fails_itself(ctx: TaskContext) -> HandlerResult {
    ctx.fail("gave up").await?;
    Err(HandlerError::new("and says so again"))
}

/// An observer hears every start once (with when the task entered the
/// queue) and every end once, whether the daemon wrote it (noop, fail, an
/// error) or the handler settled the task itself (sum, echo, `ctx.fail`).
async fn observer_hears_every_start_and_end(db: impl TestDb) {
    let observer = Arc::new(Counting::default());
    let mut registry = Registry::with_builtins();
    registry.register("app:fails-itself", fails_itself);
    let config = DaemonConfig {
        id: Some(atp_store::conformance::DAEMON_A),
        ..config()
    };
    let daemon = Daemon::new(db.store().clone(), registry, config).with_observer(observer.clone());
    let tasks = Arc::new(Mutex::new(Vec::new()));
    run_daemon(&db, daemon, |s| {
        let tasks = tasks.clone();
        async move {
            let sum = register(&s, "sum", "builtin:sum").await;
            let echo = register(&s, "echo", "builtin:echo").await;
            let noop = register(&s, "noop", "builtin:noop").await;
            let fail = register(&s, "fail", "builtin:fail").await;
            let itself = register(&s, "itself", "app:fails-itself").await;
            let mut all = Vec::new();
            for i in 0..6 {
                all.push(enqueue(&s, &sum, &format!("good{i}"), json!([i, "1"])).await);
            }
            for i in 0..2 {
                all.push(enqueue(&s, &sum, &format!("bad{i}"), json!(["x"])).await);
                all.push(enqueue(&s, &echo, &format!("e{i}"), json!({ "i": i })).await);
                all.push(enqueue(&s, &itself, &format!("s{i}"), json!(null)).await);
            }
            for i in 0..4 {
                all.push(enqueue(&s, &noop, &format!("n{i}"), json!(null)).await);
            }
            for i in 0..3 {
                all.push(enqueue(&s, &fail, &format!("f{i}"), json!(null)).await);
            }
            settled(&s, &all).await;
            *tasks.lock().unwrap() = all;
        }
    })
    .await;

    // The daemon has stopped: every end it wrote has been reported.
    let s = db.store();
    let tasks = tasks.lock().unwrap().clone();
    let n = tasks.len();
    assert_eq!(n, 19);
    let mut finished = 0;
    for t in &tasks {
        if s.task_get(t).await.unwrap().status == Status::Finished {
            finished += 1;
        }
    }
    assert_eq!(finished, 6 + 2 + 4);
    assert_eq!(observer.finished.load(Ordering::SeqCst), finished);
    assert_eq!(observer.failed.load(Ordering::SeqCst), n - finished);
    assert_eq!(observer.accepted.load(Ordering::SeqCst), 0);
    let by_type = observer.by_type.lock().unwrap().clone();
    assert_eq!(by_type.len(), n);
    for (name, status, want) in [
        ("sum", Status::Finished, 6),
        ("sum", Status::Failed, 2),
        ("echo", Status::Finished, 2),
        ("noop", Status::Finished, 4),
        ("fail", Status::Failed, 3),
        ("itself", Status::Failed, 2),
    ] {
        let seen = by_type
            .iter()
            .filter(|(_, t, st)| t.as_str() == name && *st == status)
            .count();
        assert_eq!(seen, want, "{name} {status:?}: {by_type:?}");
    }

    // Each task's end was heard once, under its own id.
    let ended: HashSet<TaskId> = by_type.iter().map(|(id, _, _)| *id).collect();
    let ids: HashSet<TaskId> = {
        let mut ids = HashSet::new();
        for t in &tasks {
            ids.insert(s.task_get(t).await.unwrap().id);
        }
        ids
    };
    assert_eq!(ended, ids);
    assert!(
        observer.odd.lock().unwrap().is_empty(),
        "{:?}",
        observer.odd
    );

    let started = observer.started.lock().unwrap().clone();
    assert_eq!(started.len(), n);
    let distinct: HashSet<_> = started.iter().map(|t| t.attempt.task).collect();
    assert_eq!(distinct.len(), n, "a task was reported started twice");
    let now = time::OffsetDateTime::now_utc();
    for t in &started {
        assert_eq!(t.start, 1);
        assert!(t.enqueued_at <= now, "{t:?}");
        let stored = s.task_get(&TaskRef::Id(t.attempt.task)).await.unwrap();
        assert_eq!(t.enqueued_at, stored.enqueued_at, "{t:?}");
        assert_eq!(t.task_type.name, stored.task_type);
    }
}

/// An idle daemon starts a delayed task within 50 ms after its due time,
/// not before, with the default poll interval (200 ms): it sleeps until the
/// due time it asked the store for, rather than finding the task at a poll.
/// The task is enqueued while the daemon is already idle, so the enqueue's
/// wake-up and the due-time sleep are what start it.
async fn a_delayed_task_starts_within_50_ms_of_its_due_time(db: impl TestDb) {
    let t = register(db.store(), "later", "builtin:noop").await;
    let daemon = Daemon::new(
        db.store().clone(),
        Registry::with_builtins(),
        DaemonConfig {
            poll_interval: DaemonConfig::default().poll_interval,
            ..config()
        },
    );
    run_daemon(&db, daemon, |s| async move {
        // Idle: registered, and its first claim found nothing.
        eventually(
            Duration::from_secs(10),
            "the daemon to register",
            || async { (!s.daemon_list().await.unwrap().is_empty()).then_some(()) },
        )
        .await;
        for round in 0..3 {
            let id = format!("in-{round}");
            let task = s
                .task_enqueue(
                    NewTask::new(t.clone(), ident(&id))
                        .with_due(atp_core::Due::After(Duration::from_millis(350))),
                )
                .await
                .unwrap();
            let key = task.key();
            settled(&s, std::slice::from_ref(&key)).await;
            let log = s.task_log(&key).await.unwrap();
            let started = log
                .iter()
                .find(|r| r.status == Status::Running)
                .expect("a RUNNING record")
                .time;
            let late = started - task.due_at;
            assert!(
                late >= time::Duration::ZERO && late < time::Duration::milliseconds(50),
                "round {round}: started {late} after its due time"
            );
        }
    })
    .await;
}

/// Counts the retries an observer hears of.
#[derive(Default)]
struct Counted {
    retried: AtomicUsize,
}

impl Observer for Counted {
    fn attempt_settled(&self, end: &AttemptSettled<'_>) {
        if end.retried {
            assert_eq!(end.status, Status::Accepted, "{end:?}");
            self.retried.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn fails_until_the_third_start(ctx: TaskContext) -> HandlerResult {
    if ctx.start() < 3 {
        Err(HandlerError::new(format!("not yet ({})", ctx.start())))
    } else {
        Ok(())
    }
}

async fn fails_for_good(_: TaskContext) -> HandlerResult {
    Err(HandlerError::permanent("the input can never work"))
}

/// Through a running daemon: a type with a retry policy retries a failing
/// handler after its back-off (the RUNNING records are at least the
/// jittered delay apart) until it succeeds on its third start; a permanent
/// error is final at once; the observer counts the retries.
async fn a_failing_handler_is_retried_with_back_off(db: impl TestDb) {
    let mut registry = Registry::with_builtins();
    registry
        .register("flaky", fails_until_the_third_start)
        .register("hopeless", fails_for_good);
    let policy = atp_core::RetryPolicy {
        delay_secs: 0.2,
        max_delay_secs: 10.0,
    };
    for (name, handler) in [("Flaky", "flaky"), ("Hopeless", "hopeless")] {
        let t = TaskType::new(type_name(name), Handler::new(handler).unwrap())
            .with_retry(policy)
            .with_max_starts(3);
        db.store().task_type_upsert(&t).await.unwrap();
    }
    let observer = Arc::new(Counted::default());
    let daemon =
        Daemon::new(db.store().clone(), registry, config()).with_observer(observer.clone());
    run_daemon(&db, daemon, |s| async move {
        let flaky = enqueue(&s, &type_name("Flaky"), "f", Value::Null).await;
        let hopeless = enqueue(&s, &type_name("Hopeless"), "h", Value::Null).await;
        settled(&s, &[flaky.clone(), hopeless.clone()]).await;
        let done = s.task_get(&flaky).await.unwrap();
        assert_eq!((done.status, done.starts), (Status::Finished, 3));
        let log = s.task_log(&flaky).await.unwrap();
        let runs: Vec<_> = log
            .iter()
            .filter(|r| r.status == Status::Running)
            .map(|r| r.time)
            .collect();
        assert_eq!(runs.len(), 3, "{log:?}");
        for (gap, full) in runs.windows(2).map(|w| w[1] - w[0]).zip([0.2, 0.4]) {
            assert!(
                gap.as_seconds_f64() >= full * 0.75,
                "{gap} < {full} s: {log:?}"
            );
        }
        assert!(
            log.iter().any(|r| r
                .message
                .starts_with("Failed: not yet (1); start 2 of 3 after ")),
            "{log:?}"
        );
        let gone = s.task_get(&hopeless).await.unwrap();
        assert_eq!((gone.status, gone.starts), (Status::Failed, 1));
        assert_eq!(observer.retried.load(Ordering::SeqCst), 2);
    })
    .await;
}

/// The issue's case: a short task claimed ahead by a daemon whose slots
/// then went to long tasks does not wait behind them. Daemon A, trained on
/// short tasks, claims two long tasks (both its slots) and six short ones
/// ahead (SCHEDULED); they go back to the queue in their place after
/// 100 ms without a slot, and daemon B runs them while the long ones still
/// run. Before, they sat RUNNING in A's buffer until a long task ended.
async fn a_short_task_claimed_ahead_never_waits_behind_long_ones(db: impl TestDb) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let registry = || {
        let mut registry = Registry::empty();
        registry.register("app:quick", returns);
        let gate = gate.clone();
        registry.register("app:hold", move |ctx: TaskContext| {
            let gate = gate.clone();
            async move {
                tokio::select! {
                    permit = gate.acquire() => permit.expect("the gate").forget(),
                    () = ctx.cancelled() => return Err(HandlerError::new("cancelled")),
                }
                Ok(())
            }
        });
        registry
    };
    let two_slots = DaemonConfig {
        concurrency: 2,
        ..config()
    };
    let s = db.store().clone();
    let quick = register(&s, "quick", "app:quick").await;
    let hold = register(&s, "hold", "app:hold").await;
    let start = |config: DaemonConfig| {
        let daemon = Daemon::new(db.store().clone(), registry(), config);
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        (
            stop,
            tokio::spawn(async move { daemon.run(shutdown).await }),
        )
    };
    let (stop_a, a) = start(two_slots.clone());
    // Teach daemon A that tasks are short.
    let warm: Vec<NewTask> = (0..50)
        .map(|i| NewTask::new(quick.clone(), ident(&format!("w{i}"))))
        .collect();
    s.task_enqueue_many(warm).await.unwrap();
    eventually(Duration::from_secs(30), "the warm-up tasks", || async {
        (s.task_counts().await.unwrap().status(Status::Finished) == 50).then_some(())
    })
    .await;
    // Two long tasks first in the queue, then six short ones: A takes the
    // long ones in its two slots and the short ones ahead.
    let mut batch = vec![
        NewTask::new(hold.clone(), ident("h1")),
        NewTask::new(hold.clone(), ident("h2")),
    ];
    batch.extend((0..6).map(|i| NewTask::new(quick.clone(), ident(&format!("q{i}")))));
    s.task_enqueue_many(batch).await.unwrap();
    let long = [
        TaskRef::Key(hold.clone(), ident("h1")),
        TaskRef::Key(hold.clone(), ident("h2")),
    ];
    for t in &long {
        reaches(&s, t, Status::Running).await;
    }
    let (stop_b, b) = start(two_slots);
    let short: Vec<TaskRef> = (0..6)
        .map(|i| TaskRef::Key(quick.clone(), ident(&format!("q{i}"))))
        .collect();
    eventually(
        Duration::from_secs(10),
        "the short tasks to finish",
        || async {
            for t in &short {
                if s.task_get(t).await.unwrap().status != Status::Finished {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    for t in &long {
        assert_eq!(s.task_get(t).await.unwrap().status, Status::Running);
    }
    let mut handed_back = 0;
    for t in &short {
        assert_eq!(s.task_get(t).await.unwrap().starts, 1, "{t:?}");
        let log = s.task_log(t).await.unwrap();
        handed_back += usize::from(
            log.iter()
                .any(|r| r.message.starts_with("Handed back unstarted")),
        );
    }
    assert!(handed_back > 0, "daemon A claimed none of them ahead");
    gate.add_permits(2);
    settled(&s, &long).await;
    stop_a.stop();
    stop_b.stop();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}

atp_store::per_engine_tests! {
    a_short_task_claimed_ahead_never_waits_behind_long_ones,
    a_failing_handler_is_retried_with_back_off,
    a_delayed_task_starts_within_50_ms_of_its_due_time,
    observer_hears_every_start_and_end,
    handler_outcomes_become_statuses,
    builtins_sum_echo_and_fail,
    only_runnable_types_are_claimed,
    runs_many_tasks_within_its_concurrency,
    a_lost_attempts_result_is_dropped,
    a_task_held_but_not_running_is_handed_back,
    sleep_reports_progress,
}
