//! An operator's cancel reaching a daemon embedded in a program, on each
//! engine: a queued task never runs, a running or paused attempt hears it
//! at once (through the store's cancellation watch, not a heartbeat: the
//! heartbeat here is a minute apart), stops, and nothing of it is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use atp_core::{Handler, NewTask, Status, Store, TaskRef, TaskType, TypeName};
use atp_daemon::{
    AttemptSettled, Daemon, DaemonConfig, HandlerError, Observer, Registry, Shutdown, TaskContext,
};
use atp_store::conformance::{ident, type_name};
use atp_store::testing::{TestDb, eventually};
use serde_json::json;
use tokio::sync::mpsc;

/// Heartbeats a minute apart: whatever stops an attempt within the test's
/// deadlines came through the cancellation watch.
fn config() -> DaemonConfig {
    DaemonConfig {
        concurrency: 2,
        poll_interval: Duration::from_millis(20),
        heartbeat_interval: Duration::from_secs(60),
        grace_period: Duration::from_secs(5),
        ..DaemonConfig::default()
    }
}

async fn register<S: Store>(s: &S, name: &str, handler: &str) -> TypeName {
    let t = TaskType::new(type_name(name), Handler::new(handler).unwrap());
    s.task_type_upsert(&t).await.unwrap();
    t.name
}

async fn enqueue<S: Store>(s: &S, t: &TypeName, id: &str, input: serde_json::Value) -> TaskRef {
    s.task_enqueue(NewTask::new(t.clone(), ident(id)).with_input(input))
        .await
        .unwrap();
    TaskRef::Key(t.clone(), ident(id))
}

async fn reaches<S: Store>(s: &S, task: &TaskRef, want: Status) {
    eventually(Duration::from_secs(10), &format!("{want:?}"), || async {
        (s.task_get(task).await.unwrap().status == want).then_some(())
    })
    .await;
}

#[derive(Default)]
struct Cancels {
    cancelled: AtomicUsize,
    settled: AtomicUsize,
}

impl Observer for Cancels {
    fn attempt_settled(&self, _: &AttemptSettled<'_>) {
        self.settled.fetch_add(1, Ordering::SeqCst);
    }
    fn attempt_cancelled(&self, c: &AttemptSettled<'_>) {
        assert_eq!(c.status, Status::Cancelled);
        self.cancelled.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs a daemon on `db` while `work` runs, then stops it (every attempt
/// ended and written) and returns what its observer heard.
async fn with_daemon<D, F, Fut>(db: &D, registry: Registry, work: F) -> Arc<Cancels>
where
    D: TestDb,
    F: FnOnce(D::Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let observer = Arc::new(Cancels::default());
    let daemon =
        Daemon::new(db.store().clone(), registry, config()).with_observer(observer.clone());
    let shutdown = Shutdown::new();
    let run = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { daemon.run(shutdown).await })
    };
    work(db.store().clone()).await;
    shutdown.stop();
    run.await.unwrap().unwrap();
    observer
}

/// What a handler saw of its cancellation.
type Seen = mpsc::UnboundedSender<(&'static str, bool)>;

/// Waits for the cancel, says so (and whether it came from an operator),
/// then tries to finish anyway: the store must refuse it.
fn watcher(
    seen: Seen,
    pause_first: bool,
) -> impl Fn(TaskContext) -> std::pin::Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>
+ Send
+ Sync
+ 'static {
    move |ctx: TaskContext| {
        let seen = seen.clone();
        Box::pin(async move {
            if pause_first {
                ctx.pause("waiting for an operator").await?;
            }
            let _ = seen.send(("running", false));
            ctx.cancelled().await;
            let _ = seen.send(("cancelled", ctx.cancelled_by_operator()));
            let late = ctx.finish("late finish").await;
            let _ = seen.send(("late finish refused", late.is_err()));
            Err(HandlerError::new("this would be a failure if written"))
        })
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(&'static str, bool)>) -> (&'static str, bool) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the handler in time")
        .expect("the handler's report")
}

/// The task's log ends with the operator's CANCELLED record: nothing of
/// the attempt came after it.
async fn ends_cancelled<S: Store>(s: &S, task: &TaskRef) {
    assert_eq!(s.task_get(task).await.unwrap().status, Status::Cancelled);
    let log = s.task_log(task).await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(
        (last.status, last.message.as_str()),
        (Status::Cancelled, "Cancelled: stop it"),
        "{log:?}"
    );
    assert!(
        !log.iter()
            .any(|l| matches!(l.status, Status::Failed | Status::Finished)),
        "{log:?}"
    );
}

async fn running_attempt_hears_the_cancel_and_writes_nothing(db: impl TestDb, pause_first: bool) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut registry = Registry::empty();
    registry.register("app:watch", watcher(tx, pause_first));
    let observer = with_daemon(&db, registry, |s| async move {
        let t = register(&s, "watched", "app:watch").await;
        let task = enqueue(&s, &t, "x", json!(null)).await;
        assert_eq!(next(&mut rx).await, ("running", false));
        let held = if pause_first {
            Status::Paused
        } else {
            Status::Running
        };
        reaches(&s, &task, held).await;
        s.task_cancel(&task, Some("stop it")).await.unwrap();
        assert_eq!(next(&mut rx).await, ("cancelled", true));
        assert_eq!(next(&mut rx).await, ("late finish refused", true));
        ends_cancelled(&s, &task).await;
    })
    .await;
    let s = db.store();
    ends_cancelled(s, &TaskRef::Key(type_name("watched"), ident("x"))).await;
    assert_eq!(observer.cancelled.load(Ordering::SeqCst), 1);
    assert_eq!(observer.settled.load(Ordering::SeqCst), 0);
}

/// A running handler's `ctx.cancelled()` fires at the cancel; its late
/// finish is refused, its error is not written: the task stays CANCELLED.
async fn a_running_attempt_hears_the_cancel_and_writes_nothing(db: impl TestDb) {
    running_attempt_hears_the_cancel_and_writes_nothing(db, false).await;
}

/// The same for an attempt that paused its task.
async fn a_paused_attempt_hears_the_cancel_and_writes_nothing(db: impl TestDb) {
    running_attempt_hears_the_cancel_and_writes_nothing(db, true).await;
}

/// `builtin:sleep` (a minute) stops at the cancel, long before its end,
/// and its "cancelled while sleeping" error becomes no FAILED.
async fn a_sleeping_builtin_is_cancelled(db: impl TestDb) {
    let observer = with_daemon(&db, Registry::with_builtins(), |s| async move {
        let t = register(&s, "sleepy", "builtin:sleep").await;
        let task = enqueue(&s, &t, "nap", json!({ "seconds": 60 })).await;
        reaches(&s, &task, Status::Running).await;
        s.task_cancel(&task, Some("stop it")).await.unwrap();
    })
    .await;
    // The stop waited for the attempt: it ended well within the test.
    ends_cancelled(db.store(), &TaskRef::Key(type_name("sleepy"), ident("nap"))).await;
    assert_eq!(observer.cancelled.load(Ordering::SeqCst), 1);
}

/// A task cancelled while queued is never run by a daemon started
/// afterwards (which runs the task queued behind it).
async fn a_cancelled_queued_task_never_runs(db: impl TestDb) {
    let s = db.store();
    let t = register(s, "noop", "builtin:noop").await;
    let doomed = enqueue(s, &t, "doomed", json!(null)).await;
    let after = enqueue(s, &t, "after", json!(null)).await;
    s.task_cancel(&doomed, Some("stop it")).await.unwrap();
    with_daemon(&db, Registry::with_builtins(), |s| async move {
        reaches(&s, &after, Status::Finished).await;
    })
    .await;
    ends_cancelled(s, &doomed).await;
    let log = s.task_log(&doomed).await.unwrap();
    assert!(!log.iter().any(|l| l.status == Status::Running), "{log:?}");
}

atp_store::per_engine_tests! {
    a_running_attempt_hears_the_cancel_and_writes_nothing,
    a_paused_attempt_hears_the_cancel_and_writes_nothing,
    a_sleeping_builtin_is_cancelled,
    a_cancelled_queued_task_never_runs,
}
