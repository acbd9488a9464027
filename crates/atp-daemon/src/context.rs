//! [`TaskContext`]: what a handler knows about its task and may do to it.
//!
//! It offers what the original `TaskStatus` object did (the task's info and
//! identifier, its status, set FINISHED / FAILED / PAUSED / RUNNING with a
//! message, store the response) plus progress, heartbeat and a
//! cancellation signal. Every change names the attempt, so once the task
//! has been rescued and handed to someone else, each call fails with a
//! "lost" error and the attempt's cancellation fires.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use atp_core::task::Progress;
use atp_core::{
    Attempt, DaemonId, Error, Response, StartedTask, Status, StatusChange, Store, StoreExt, Task,
    TaskId, TaskIdentifier, TaskRef, TaskType,
};
use tokio_util::sync::CancellationToken;

use crate::error::HandlerError;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The store calls a running attempt makes, object-safe so that handlers
/// need not be generic over the engine.
pub(crate) trait AttemptStore: Send + Sync + 'static {
    fn set_status(&self, change: StatusChange) -> BoxFuture<'_, atp_core::Result<()>>;
    fn progress(&self, attempt: Attempt, progress: Progress)
    -> BoxFuture<'_, atp_core::Result<()>>;
    fn response(&self, attempt: Attempt, response: Response)
    -> BoxFuture<'_, atp_core::Result<()>>;
    fn heartbeat(&self, attempt: Attempt) -> BoxFuture<'_, atp_core::Result<()>>;
    fn task(&self, id: TaskId) -> BoxFuture<'_, atp_core::Result<Task>>;
}

impl<S: Store> AttemptStore for S {
    fn set_status(&self, change: StatusChange) -> BoxFuture<'_, atp_core::Result<()>> {
        Box::pin(self.task_set_status(change))
    }
    fn progress(
        &self,
        attempt: Attempt,
        progress: Progress,
    ) -> BoxFuture<'_, atp_core::Result<()>> {
        Box::pin(async move { self.task_progress(attempt, &progress).await })
    }
    fn response(
        &self,
        attempt: Attempt,
        response: Response,
    ) -> BoxFuture<'_, atp_core::Result<()>> {
        Box::pin(async move { self.task_response_put(attempt, &response).await })
    }
    fn heartbeat(&self, attempt: Attempt) -> BoxFuture<'_, atp_core::Result<()>> {
        Box::pin(self.task_heartbeat(attempt))
    }
    fn task(&self, id: TaskId) -> BoxFuture<'_, atp_core::Result<Task>> {
        Box::pin(async move { self.task_get(&TaskRef::Id(id)).await })
    }
}

/// A running attempt's view of its task. Cheap to clone.
#[derive(Clone)]
pub struct TaskContext {
    inner: Arc<Inner>,
}

struct Inner {
    started: StartedTask,
    daemon: DaemonId,
    store: Arc<dyn AttemptStore>,
    cancel: CancellationToken,
    /// The final status the handler gave the task itself, once it did.
    settled: OnceLock<Status>,
    /// Set when a change was refused because the attempt lost the task.
    lost: AtomicBool,
    /// Set (with `lost`) when the task was lost to an operator's cancel:
    /// the attempt is stopped gently ([`TaskContext::cancel_grace`]).
    cancelled_by_operator: AtomicBool,
    /// How long an `exec:` program stopped by a cancel has between SIGTERM
    /// and the SIGKILL of its process group.
    cancel_grace: std::time::Duration,
    /// For a task claimed ahead (SCHEDULED until its handler began): the
    /// settler's reply to its start, until someone awaited it
    /// ([`TaskContext::start_written`]).
    start_pending: tokio::sync::Mutex<Option<StartReply>>,
}

/// The settler's reply to the start of a task claimed ahead.
pub(crate) type StartReply = tokio::sync::oneshot::Receiver<atp_core::Result<()>>;

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("attempt", &self.inner.started.attempt)
            .field("type", &self.inner.started.task_type.name)
            .field("identifier", &self.inner.started.identifier)
            .finish_non_exhaustive()
    }
}

impl TaskContext {
    pub(crate) fn new(
        started: StartedTask,
        daemon: DaemonId,
        store: Arc<dyn AttemptStore>,
        cancel: CancellationToken,
        cancel_grace: std::time::Duration,
    ) -> Self {
        TaskContext {
            inner: Arc::new(Inner {
                started,
                daemon,
                store,
                cancel,
                settled: OnceLock::new(),
                lost: AtomicBool::new(false),
                cancelled_by_operator: AtomicBool::new(false),
                cancel_grace,
                start_pending: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The same context for a task claimed ahead, whose start the settler
    /// is writing (`reply` says how that went). Called before the context
    /// is shared.
    pub(crate) fn awaiting_start(mut self, reply: StartReply) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("a new context is not shared yet");
        *inner.start_pending.get_mut() = Some(reply);
        self
    }

    /// Waits until the start of a task claimed ahead is written (at once
    /// for a task started by its claim), so that the attempt's own status
    /// changes follow its RUNNING record. A start refused because the
    /// attempt lost the task (cancelled, rescued) marks it lost.
    pub(crate) async fn start_written(&self) {
        let mut pending = self.inner.start_pending.lock().await;
        let Some(reply) = pending.take() else {
            return;
        };
        match reply.await {
            Ok(Ok(())) => {}
            Ok(Err(atp_core::Error::StaleAttempt { .. })) => self.mark_lost(),
            Ok(Err(e)) => {
                tracing::warn!(task = %self.id(), error = %e, "could not record the start of a task claimed ahead")
            }
            Err(_) => tracing::debug!("the settler stopped before writing a start"),
        }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.inner.started.attempt.task
    }

    /// The task's type, with its handler and limits.
    pub fn task_type(&self) -> &TaskType {
        &self.inner.started.task_type
    }

    /// The task's identifier (unique within its type).
    pub fn identifier(&self) -> &TaskIdentifier {
        &self.inner.started.identifier
    }

    /// The input given at enqueue.
    pub fn input(&self) -> &serde_json::Value {
        &self.inner.started.input
    }

    /// Which start this is: 1 for the first run, 2 after one rescue, …
    pub fn start(&self) -> u32 {
        self.inner.started.start
    }

    /// The hold this attempt has on the task (its fencing token).
    pub fn attempt(&self) -> Attempt {
        self.inner.started.attempt
    }

    /// The daemon running the attempt (the task's holder).
    pub fn daemon_id(&self) -> DaemonId {
        self.inner.daemon
    }

    /// When the task last entered the queue (at enqueue, or when it was
    /// handed back or re-enqueued): how long it waited is the start time
    /// minus this.
    pub fn enqueued_at(&self) -> time::OffsetDateTime {
        self.inner.started.enqueued_at
    }

    /// Whether the attempt should stop: the daemon is shutting down, the
    /// attempt overran its type's timeout, the task was taken from it, or
    /// an operator cancelled the task (see
    /// [`TaskContext::cancelled_by_operator`]).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Resolves when [`TaskContext::is_cancelled`] becomes true.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await;
    }

    /// The task as stored now (status, progress, starts, times).
    pub async fn status(&self) -> Result<Task, HandlerError> {
        Ok(self.inner.store.task(self.id()).await?)
    }

    /// Records progress (0–100 when known) and a message, visible in the
    /// task's status; also counts as a heartbeat.
    pub async fn progress(
        &self,
        percent: Option<f64>,
        message: impl Into<String>,
    ) -> Result<(), HandlerError> {
        let progress = Progress {
            percent,
            message: message.into(),
        };
        let r = self.inner.store.progress(self.attempt(), progress).await;
        self.best_effort(r, "progress")
    }

    /// Tells the store the attempt is alive, so a long task is not taken
    /// for abandoned. The daemon also does this on its own for every
    /// running attempt.
    pub async fn heartbeat(&self) -> Result<(), HandlerError> {
        let r = self.inner.store.heartbeat(self.attempt()).await;
        self.best_effort(r, "heartbeat")
    }

    /// Stores (or replaces) the task's response.
    pub async fn set_response(&self, response: Response) -> Result<(), HandlerError> {
        let r = self
            .persist(|| self.inner.store.response(self.attempt(), response.clone()))
            .await;
        self.checked(r)
    }

    /// RUNNING → PAUSED, logged with `message`.
    pub async fn pause(&self, message: impl Into<String>) -> Result<(), HandlerError> {
        self.change(StatusChange::pause(self.attempt(), message))
            .await
    }

    /// PAUSED → RUNNING, logged with `message`.
    pub async fn resume(&self, message: impl Into<String>) -> Result<(), HandlerError> {
        self.change(StatusChange::resume(self.attempt(), message))
            .await
    }

    /// Marks the task FINISHED now, logged with `message`.
    pub async fn finish(&self, message: impl Into<String>) -> Result<(), HandlerError> {
        self.change(StatusChange::finish(self.attempt(), message))
            .await
    }

    /// Marks the task FINISHED with its response, in one transaction.
    pub async fn finish_with(
        &self,
        response: Response,
        message: impl Into<String>,
    ) -> Result<(), HandlerError> {
        self.change(StatusChange::finish(self.attempt(), message).with_response(response))
            .await
    }

    /// Marks the task FAILED now, logged with `message`.
    pub async fn fail(&self, message: impl Into<String>) -> Result<(), HandlerError> {
        // A final status, as the handler says: never retried (to ask for a
        // retry, return a `HandlerError`).
        self.change(StatusChange::fail_permanently(self.attempt(), message))
            .await
    }

    async fn change(&self, change: StatusChange) -> Result<(), HandlerError> {
        self.start_written().await;
        let status = change.status();
        let r = self
            .persist(|| self.inner.store.set_status(change.clone()))
            .await;
        self.checked(r)?;
        if status.is_terminal() {
            // The first final status written is the one the task keeps
            // (the store refuses any later one).
            let _ = self.inner.settled.set(status);
        }
        Ok(())
    }

    /// Whether the handler already gave the task a final status.
    pub(crate) fn settled(&self) -> bool {
        self.inner.settled.get().is_some()
    }

    /// The final status (FINISHED or FAILED) the handler gave the task
    /// itself, once the store recorded it.
    pub(crate) fn settled_status(&self) -> Option<Status> {
        self.inner.settled.get().copied()
    }

    /// Whether a change was refused because the task was taken away.
    pub(crate) fn lost(&self) -> bool {
        self.inner.lost.load(Ordering::SeqCst)
    }

    /// Marks the attempt lost and cancels it.
    pub(crate) fn mark_lost(&self) {
        self.inner.lost.store(true, Ordering::SeqCst);
        self.inner.cancel.cancel();
    }

    /// Marks the attempt lost to an operator's cancel and cancels it: the
    /// task is CANCELLED already (the store fenced this attempt out), so
    /// nothing of the attempt is written; an `exec:` program gets SIGTERM
    /// and [`TaskContext::cancel_grace`] before its group is killed.
    pub(crate) fn mark_cancelled(&self) {
        self.inner
            .cancelled_by_operator
            .store(true, Ordering::SeqCst);
        self.mark_lost();
    }

    /// Whether an operator cancelled the task while this attempt ran (a
    /// handler that cleans up may tell a cancel from a shutdown with it).
    pub fn cancelled_by_operator(&self) -> bool {
        self.inner.cancelled_by_operator.load(Ordering::SeqCst)
    }

    /// Whether this attempt, lost, was lost to an operator's cancel: a
    /// change of the attempt's own can be refused (fenced out) before the
    /// daemon hears of the cancel, so a lost attempt that was not told why
    /// reads its task back once. Marks it cancelled when so.
    pub(crate) async fn confirm_cancelled(&self) -> bool {
        if self.cancelled_by_operator() {
            return true;
        }
        if !self.lost() {
            return false;
        }
        match self.inner.store.task(self.id()).await {
            Ok(task) if task.status == Status::Cancelled => {
                self.mark_cancelled();
                true
            }
            _ => false,
        }
    }

    /// How long a cancelled `exec:` program may take to exit after SIGTERM
    /// (the daemon's `cancel_grace`).
    pub(crate) fn cancel_grace(&self) -> std::time::Duration {
        self.inner.cancel_grace
    }

    /// Runs a write that must not be lost, again and again while the
    /// database is unreachable (with the daemon's back-off), until it
    /// succeeds, fails for another reason, or the attempt is cancelled.
    async fn persist<'a, F>(&'a self, write: F) -> atp_core::Result<()>
    where
        F: FnMut() -> BoxFuture<'a, atp_core::Result<()>>,
    {
        crate::daemon::retry_unavailable(&self.inner.cancel, "recording a handler's change", write)
            .await
    }

    /// Progress and heartbeats are worth losing rather than failing a task
    /// over: while the database is away they are skipped (the daemon's own
    /// heartbeats resume when it is back).
    fn best_effort(&self, r: atp_core::Result<()>, what: &str) -> Result<(), HandlerError> {
        match r {
            Err(e @ Error::Unavailable { .. }) => {
                tracing::warn!(error = %e, "{what} skipped: the database is unreachable");
                Ok(())
            }
            other => self.checked(other),
        }
    }

    fn checked(&self, r: atp_core::Result<()>) -> Result<(), HandlerError> {
        match r {
            Ok(()) => Ok(()),
            Err(e @ Error::StaleAttempt { .. }) => {
                self.mark_lost();
                Err(HandlerError::new(format!(
                    "this attempt no longer holds the task: {e}"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}
