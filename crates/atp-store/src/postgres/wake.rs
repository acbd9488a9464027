//! Wake-ups: LISTEN/NOTIFY.
//!
//! Every transaction that puts tasks into ACCEPTED notifies [`CHANNEL`]
//! with the schema it wrote to as payload (`current_schema()`, or `''`):
//! `atp_count_in` (migration 0004) for enqueues, the queue counter update
//! of `WRITE_CHANGES` for hand-backs and rescues, and the operator's
//! re-enqueue. NOTIFY is delivered at commit and dropped on rollback.
//!
//! A handle (with all its clones) starts one listener at its first
//! [`Wakeups::wait`]: a background task with a connection of its own (not
//! from the pool, same settings) that runs `LISTEN atp_tasks` and wakes the
//! waiters on every notification for its schema. When that connection
//! fails it reconnects with back-off, and meanwhile waiters time out, as if
//! they polled. After every (re)connection it wakes all waiters once, since
//! notifications sent before LISTEN took effect are not delivered: a
//! spurious wake-up rather than a missed one. The listener ends when the
//! handle's last clone is dropped.
//!
//! The same connection also listens on `atp_cancelled`
//! ([`super::cancel::CHANNEL`]): a cancellation of a held task notifies it
//! in its own transaction, naming the holder, the task and the schema, and
//! the listener tells the handle's [`CancelHub`] (so the holding daemon,
//! on any host, stops the attempt at once). After every (re)connection it
//! tells every watch that it may have missed some: the daemons then check
//! all their tasks, as their heartbeat would.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Config, Connection, NoTls, Socket};

use super::liveness::Liveness;
use crate::cancel_hub::CancelHub;

/// The notification channel.
pub(super) const CHANNEL: &str = "atp_tasks";
/// The first pause before reconnecting a lost listener; it doubles up to
/// [`LAST_RETRY`] and is reset by a successful LISTEN. Short: while the
/// listener is away, idle daemons only poll, and the daemons registered
/// through this handle hold no liveness lock (`liveness.rs`); a server
/// that came back should find it listening again within 100 ms. A refused
/// connection costs the server next to nothing.
const FIRST_RETRY: Duration = Duration::from_millis(20);
const LAST_RETRY: Duration = Duration::from_millis(80);
/// While the server stays away, a warning at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// A listener connection only reads; without TCP keepalives a peer that
/// vanished (host down, network cut) would go unnoticed for hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// One handle's wake-ups (shared by its clones).
pub(super) struct Wakeups {
    /// How to open the listener connection.
    config: Config,
    notify: Arc<Notify>,
    /// Cancellations heard, for `Store::task_cancelled_watch`.
    cancelled: Arc<CancelHub>,
    /// The liveness locks of the daemons registered through this handle.
    liveness: Arc<Liveness>,
    /// The server process of the listener connection while it listens,
    /// else 0.
    listener_pid: Arc<AtomicI32>,
    /// The running listener, if one was started (and did not end with its
    /// runtime).
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Never sent on: dropped with the handle, which ends the listener.
    alive: watch::Sender<()>,
}

impl Wakeups {
    pub(super) fn new(mut config: Config) -> Self {
        if config.get_keepalives_idle() > KEEPALIVE_IDLE {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        Wakeups {
            config,
            notify: Arc::new(Notify::new()),
            cancelled: Arc::new(CancelHub::new()),
            liveness: Arc::new(Liveness::new()),
            listener_pid: Arc::new(AtomicI32::new(0)),
            listener: Mutex::new(None),
            alive: watch::channel(()).0,
        }
    }

    /// See [`atp_core::Store::wait_for_tasks`].
    pub(super) async fn wait(&self, within: Duration) {
        crate::shared::wait_notified(&self.notify, within, || self.ensure_listening()).await;
    }

    /// See [`atp_core::Store::task_cancelled_watch`]: the watch first, then
    /// the listener, whose first connection tells the watch it may have
    /// missed notices.
    pub(super) fn watch_cancelled(&self, holder: atp_core::DaemonId) -> atp_core::CancelWatch {
        let watch = self.cancelled.watch(holder);
        self.ensure_listening();
        watch
    }

    /// Has the listener hold `id`'s liveness lock (see `liveness.rs`);
    /// `false` when it could not soon.
    pub(super) async fn hold_liveness(&self, id: i64) -> bool {
        self.ensure_listening();
        self.liveness.hold(id).await
    }

    /// Lets `id`'s liveness lock go.
    pub(super) fn release_liveness(&self, id: i64) {
        self.liveness.release(id);
    }

    /// Starts the listener unless it runs. A listener whose runtime shut
    /// down is started again on the caller's.
    fn ensure_listening(&self) {
        let mut listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if listener.as_ref().is_some_and(|l| !l.is_finished()) {
            return;
        }
        *listener = Some(tokio::spawn(listen(
            self.config.clone(),
            Arc::clone(&self.notify),
            Arc::clone(&self.cancelled),
            Arc::clone(&self.liveness),
            Arc::clone(&self.listener_pid),
            self.alive.subscribe(),
        )));
    }

    /// The server process that listens for this handle, once it does.
    #[cfg(test)]
    pub(super) fn listener_pid(&self) -> Option<i32> {
        Some(self.listener_pid.load(Ordering::Relaxed)).filter(|&pid| pid != 0)
    }
}

type Lost = Box<dyn std::error::Error + Send + Sync>;

/// What the listener delivers to, shared with the handle.
struct Listeners<'a> {
    notify: &'a Notify,
    cancelled: &'a CancelHub,
    liveness: &'a Liveness,
    pid: &'a AtomicI32,
}

/// Listens until the handle is dropped, reconnecting after failures.
async fn listen(
    config: Config,
    notify: Arc<Notify>,
    cancelled: Arc<CancelHub>,
    liveness: Arc<Liveness>,
    pid: Arc<AtomicI32>,
    mut alive: watch::Receiver<()>,
) {
    let mut pause = FIRST_RETRY;
    let to = Listeners {
        notify: &notify,
        cancelled: &cancelled,
        liveness: &liveness,
        pid: &pid,
    };
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        let lost = tokio::select! {
            lost = listen_once(&config, &to, &mut pause) => lost,
            _ = alive.changed() => return,
        };
        pid.store(0, Ordering::Relaxed);
        liveness.lost();
        if pause == FIRST_RETRY {
            // It had connected: a new outage.
            warned = None;
        }
        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            warned = Some(tokio::time::Instant::now());
            tracing::warn!(
                error = %lost,
                retry_every = ?LAST_RETRY,
                "the PostgreSQL connection that listens for new tasks failed; idle daemons poll until it is back"
            );
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = alive.changed() => return,
        }
        pause = (pause * 2).min(LAST_RETRY);
    }
}

/// Connects, listens and wakes waiters until the connection fails; holds
/// the registered daemons' liveness locks meanwhile.
async fn listen_once(config: &Config, to: &Listeners<'_>, pause: &mut Duration) -> Lost {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(connected) => connected,
        Err(e) => return e.into(),
    };
    let setup = async {
        let row = client
            .query_one(
                "SELECT coalesce(current_schema(), ''), pg_backend_pid()",
                &[],
            )
            .await?;
        client
            .batch_execute(&format!(
                "LISTEN {CHANNEL}; LISTEN {}",
                super::cancel::CHANNEL
            ))
            .await?;
        Ok::<_, tokio_postgres::Error>((row.try_get::<_, String>(0)?, row.try_get::<_, i32>(1)?))
    };
    // Nothing but notices can come before LISTEN took effect.
    let (schema, backend) = match driving(&mut connection, setup, |_| {}).await {
        Ok(Ok(setup)) => setup,
        Ok(Err(e)) => return e.into(),
        Err(lost) => return lost,
    };
    tracing::debug!(schema, backend, "listening for new tasks");
    to.pid.store(backend, Ordering::Relaxed);
    *pause = FIRST_RETRY;
    to.notify.notify_waiters();
    to.cancelled.missed();
    let deliver = |message: AsyncMessage| match message {
        AsyncMessage::Notification(n) if n.channel() == CHANNEL && n.payload() == schema => {
            to.notify.notify_waiters();
        }
        AsyncMessage::Notification(n) if n.channel() == super::cancel::CHANNEL => {
            if let Some((holder, task)) = super::cancel::parse(n.payload(), &schema) {
                to.cancelled.cancelled(holder, task);
            }
        }
        _ => {}
    };
    // The locks first, then again whenever the registered daemons change.
    loop {
        match driving(&mut connection, to.liveness.sync(&client), deliver).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return e.into(),
            Err(lost) => return lost,
        }
        loop {
            tokio::select! {
                message = next_message(&mut connection) => match message {
                    Ok(message) => deliver(message),
                    Err(lost) => return lost,
                },
                () = to.liveness.changed() => break,
            }
        }
    }
}

/// Runs `work` (statements on the connection's client) while polling the
/// connection, which only makes progress while polled; notifications that
/// arrive meanwhile go to `deliver`. `Err` when the connection is lost.
async fn driving<T>(
    connection: &mut Connection<Socket, NoTlsStream>,
    work: impl Future<Output = T>,
    deliver: impl Fn(AsyncMessage),
) -> Result<T, Lost> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Ok(done),
            message = next_message(connection) => deliver(message?),
        }
    }
}

/// The next notification or notice, once the connection has done any work
/// the client asked for.
async fn next_message(
    connection: &mut Connection<Socket, NoTlsStream>,
) -> Result<AsyncMessage, Lost> {
    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
        Some(Ok(message)) => Ok(message),
        Some(Err(e)) => Err(e.into()),
        None => Err("the server closed the connection".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::Poll;

    use atp_core::{Handler, NewTask, Store, StoreOptions, TaskIdentifier, TaskType, TypeName};

    use super::super::PgStore;
    use super::*;
    use crate::testing::{PgDb, TestDb, eventually};

    /// Waits until the handle's listener listens (on a server process other
    /// than `other_than`); returns that process's pid.
    async fn listening(store: &PgStore, other_than: Option<i32>) -> i32 {
        eventually(
            Duration::from_secs(10),
            "the listener to (re)connect",
            || async {
                store.wait_for_tasks(Duration::from_millis(50)).await;
                store
                    .inner
                    .wakeups
                    .listener_pid()
                    .filter(|&pid| Some(pid) != other_than)
            },
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_listener_reconnects_and_other_schemas_wake_nobody() {
        let Some(db) = PgDb::new().await else {
            return;
        };
        let name = TypeName::new("t").unwrap();
        let t = TaskType::new(name.clone(), Handler::new("builtin:noop").unwrap());
        db.store().task_type_upsert(&t).await.unwrap();
        let first = listening(db.store(), None).await;

        let raw = db.raw().await;
        raw.execute("SELECT pg_terminate_backend($1)", &[&first])
            .await
            .unwrap();
        listening(db.store(), Some(first)).await;

        let store = db.store().clone();
        let mut waiter = Box::pin(async move {
            store.wait_for_tasks(Duration::from_secs(10)).await;
        });
        // The first poll begins the wait: from then on no wake-up is missed.
        let first = std::future::poll_fn(|cx| Poll::Ready(waiter.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "woken with nothing enqueued");
        let mut waiter = tokio::spawn(waiter);
        raw.execute("SELECT pg_notify($1, 'some_other_schema')", &[&CHANNEL])
            .await
            .unwrap();
        // That nothing happens can only be watched for a while: a deadline.
        let early = tokio::time::timeout(Duration::from_millis(200), &mut waiter).await;
        assert!(early.is_err(), "woken by another schema's tasks");
        let task = NewTask::new(name, TaskIdentifier::new("x").unwrap());
        db.store().task_enqueue(task).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken after the reconnection")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_listener_ends_with_the_last_clone() {
        let Some(db) = PgDb::new().await else {
            return;
        };
        let store = db.open(StoreOptions::default()).await;
        let pid = listening(&store, None).await;
        let mut listener = store.inner.wakeups.listener.lock().unwrap().take().unwrap();
        let clone = store.clone();
        drop(store);
        // That the listener stays can only be watched for a while: a deadline.
        let ended = tokio::time::timeout(Duration::from_millis(100), &mut listener).await;
        assert!(ended.is_err(), "a clone keeps the listener");
        drop(clone);
        tokio::time::timeout(Duration::from_secs(5), listener)
            .await
            .expect("the listener ends with the last clone")
            .unwrap();
        let raw = db.raw().await;
        eventually(
            Duration::from_secs(5),
            "the listener connection to close",
            || async {
                let open: i64 = raw
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                        &[&pid],
                    )
                    .await
                    .unwrap()
                    .get(0);
                (open == 0).then_some(())
            },
        )
        .await;
    }
}
