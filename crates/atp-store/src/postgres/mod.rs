//! The PostgreSQL engine: a connection URL, for daemons on many hosts.
//!
//! # Concurrency
//! Every call runs at READ COMMITTED on a pooled connection (deadpool,
//! [`MAX_CONNECTIONS`] per handle). Claims take rows with `FOR NO KEY UPDATE
//! SKIP LOCKED`, so claimers never wait for each other and never share a
//! task. Holders' batches lock their task rows (in id order) before they
//! decide, then write every row with one set-based statement; clean-ups
//! lock what they rescue or delete with `SKIP LOCKED`, so several daemons
//! running them at once split the work instead of doing it twice. The queue
//! counter rows (`atp_queue_counter`) are always the last rows a transaction
//! locks, so they never take part in a lock cycle. Serialization failures
//! and deadlocks are retried from the start of the transaction and never
//! reach a caller; a lost connection is [`Error::Unavailable`].
//!
//! # Times
//! Every time written and every cut-off compared comes from the database
//! clock (`now()`, the start of the transaction), never from the caller's
//! host: daemons on hosts with skewed clocks share one notion of "silent
//! for 30 s" and one FIFO order.
//!
//! # Durability
//! Whatever the server is configured for; with the defaults
//! (`synchronous_commit=on`) a call that returned survives a crash of the
//! server.
//!
//! # Connections
//! `NoTls` only: `sslmode=require` in the URL is refused at connect. With
//! [`PgStore::connect_with_schema`] every pooled connection starts with its
//! `search_path` set to that schema (created if missing), which is how tests
//! give each case a database of its own on one server. A handle that
//! waits for tasks ([`Store::wait_for_tasks`]) also keeps one connection
//! outside the pool, which listens for notifications (see `wake.rs`).

mod bulk;
mod cancel;
mod due;
#[cfg(test)]
mod due_plans;
mod limit;
mod list;
mod liveness;
mod migrate;
mod queue;
mod reap;
mod row;
mod schedule;
mod task;
mod task_type;
mod wake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use atp_core::schedule::{NewSchedule, Schedule, ScheduleFired, ScheduleName, ScheduleOccurrence};
use atp_core::store::ClaimParams;
use atp_core::{
    Attempt, BulkReenqueue, ClaimedTask, DaemonId, DaemonInfo, DeadRule, Error, LogRecord, NewTask,
    Progress, ReapedDaemon, Rescued, Response, Result, Retired, StartedTask, StatusChange, Store,
    StoreOptions, Task, TaskCounts, TaskFilter, TaskId, TaskMessagePage, TaskPage, TaskRef,
    TaskType, TypeName,
};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, StatementCache,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use crate::input_check::{self, InputSchemas};

pub use migrate::LATEST_VERSION;

/// Connections per handle by default (see [`StoreOptions::pool_size`]).
pub const MAX_CONNECTIONS: usize = StoreOptions::DEFAULT_POOL_SIZE;
/// How long a call waits for a free pooled connection before it reports the
/// database unavailable.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a transaction keeps being retried after serialization failures
/// or deadlocks (each retry is a fresh attempt; this only bounds a livelock).
const RETRY_GIVE_UP: Duration = Duration::from_secs(300);
/// Retries of a transaction that met a foreign-key violation: that only
/// happens when a row it refers to was deleted concurrently (a type, a task),
/// and one retry then reports it as not found; more means a bug, reported.
const FOREIGN_KEY_RETRIES: u32 = 3;

/// Runs `$work` (an expression using the [`Conn`] `$c`) in one
/// transaction on a pooled connection, retrying the whole of it after a
/// serialization failure or a deadlock. (A macro: an async closure
/// borrowing the caller's arguments cannot yet be proven `Send` for every
/// lifetime the trait's futures need.)
macro_rules! transaction {
    ($store:expr, |$c:ident| $work:expr) => {{
        let mut client = $store.client().await?;
        let mut retries = Retries::new();
        loop {
            let outcome: Result<_> = async {
                let tx = client
                    .transaction()
                    .await
                    .map_err(pg("beginning a transaction"))?;
                let out = {
                    let $c = Conn::of_transaction(&tx, $store.clock_shift());
                    $work.await
                };
                match out {
                    Ok(out) => {
                        tx.commit().await.map_err(pg("committing"))?;
                        Ok(out)
                    }
                    // Roll back before returning rather than leaving it to
                    // `tx`'s drop, which only queues the ROLLBACK: the
                    // locks are gone when the caller sees the error, even
                    // if its runtime is about to block.
                    Err(e) => {
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            }
            .await;
            match outcome {
                Err(e) if retries.again(&e).await => {}
                other => break other,
            }
        }
    }};
}

/// Runs `$work` outside a transaction: each statement commits on its own.
/// For reads and for writes that are one statement; retried like
/// [`transaction!`].
macro_rules! statement {
    ($store:expr, |$c:ident| $work:expr) => {{
        let client = $store.client().await?;
        let mut retries = Retries::new();
        loop {
            let outcome: Result<_> = {
                let $c = Conn::of_client(&client, $store.clock_shift());
                $work.await
            };
            match outcome {
                Err(e) if retries.again(&e).await => {}
                other => break other,
            }
        }
    }};
}

/// A handle on a PostgreSQL database (or one schema of it). Cheap to clone;
/// clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// The schema every connection works in, or `None` for the server's
    /// default `search_path`.
    schema: Option<String>,
    options: StoreOptions,
    /// LISTEN/NOTIFY for [`Store::wait_for_tasks`].
    wakeups: wake::Wakeups,
    /// Whether the last claim found types with a limit of running tasks:
    /// claims then take the locking path (`limit.rs`). Starts `true`, the
    /// safe guess.
    limited: std::sync::atomic::AtomicBool,
    /// The input schemas this handle checks enqueues against.
    input_schemas: InputSchemas,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.schema)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Reads a type's input schema again after an enqueue found it changed
    /// (`input_check.rs`).
    async fn learn_input_schema(&self, name: &TypeName) -> Result<()> {
        match statement!(self, |c| task_type::input_schema(c, name))? {
            Some((about, rev)) => self.inner.input_schemas.learn(name, &about, rev),
            None => {
                self.inner.input_schemas.forget(name);
                Ok(())
            }
        }
    }

    /// Connects to the database at `url` (libpq syntax) and brings its
    /// schema up to date. Safe when several processes connect to a fresh
    /// database at once.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self> {
        Self::connect_at_version(url, None, options, LATEST_VERSION).await
    }

    /// Like [`PgStore::connect`], but every connection works in `schema`
    /// (created if missing) instead of the default `search_path`.
    pub async fn connect_with_schema(
        url: &str,
        schema: &str,
        options: StoreOptions,
    ) -> Result<Self> {
        Self::connect_at_version(url, Some(schema), options, LATEST_VERSION).await
    }

    /// Like [`PgStore::connect_with_schema`] (or [`PgStore::connect`] when
    /// `schema` is `None`), migrating only up to `version`: lets tests make a
    /// database as an older ATP left it.
    pub async fn connect_at_version(
        url: &str,
        schema: Option<&str>,
        options: StoreOptions,
        version: u32,
    ) -> Result<Self> {
        options.validate()?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::InvalidArgument(format!("invalid PostgreSQL URL {url:?}: {e}")))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("atp");
        }
        let mut session = planner_options();
        if let Some(schema) = schema {
            session = format!("{session} {}", migrate::search_path_option(schema)?);
        }
        let session = match config.get_options() {
            Some(given) if !given.is_empty() => format!("{given} {session}"),
            _ => session,
        };
        config.options(&session);
        let wakeups = wake::Wakeups::new(config.clone());
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| Error::Database {
                context: "building the connection pool".into(),
                source: Box::new(e),
            })?;
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                schema: schema.map(str::to_owned),
                options,
                wakeups,
                limited: std::sync::atomic::AtomicBool::new(true),
                input_schemas: InputSchemas::default(),
            }),
        };
        if let Some(schema) = schema {
            transaction!(store, |c| migrate::ensure_schema(c, schema))?;
        }
        transaction!(store, |c| migrate::migrate(c, version))?;
        Ok(store)
    }

    /// Whether claims take the locking path for limited types.
    fn limited(&self) -> bool {
        self.inner
            .limited
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records what the last claim learnt about limited types.
    fn set_limited(&self, limited: bool) {
        self.inner
            .limited
            .store(limited, std::sync::atomic::Ordering::Relaxed);
    }

    /// The schema this handle works in, when one was given.
    pub fn schema(&self) -> Option<&str> {
        self.inner.schema.as_deref()
    }

    /// How far this handle's clock is ahead of the server's (microseconds).
    fn clock_shift(&self) -> i64 {
        self.inner.options.clock.shift_micros()
    }

    async fn client(&self) -> Result<Object> {
        self.inner.pool.get().await.map_err(pool_error)
    }
}

/// Session settings of every ATP connection (`-c NAME=VALUE` at connect).
///
/// Every query of ATP's is written for B-tree ranges and key look-ups, and
/// the planner's picture of the task table is often wrong by orders of
/// magnitude: right after a bulk enqueue, before autovacuum's ANALYZE, it
/// believes the queue tiny. Two plans it then chose, both measured:
/// - a bitmap scan and sort of the whole queue for each claim (230 ms with
///   a million queued instead of well under 1 ms): bitmap scans off;
/// - worse, the claim's generic plan (the one a prepared statement keeps
///   after five executions), made while the queue was nearly empty, finds
///   each candidate's row by a sequential scan of `atp_task` inside a
///   nested loop: quadratic, 75 ms of CPU per claim with 8,000 queued, and
///   two daemons drained 64 tasks/s instead of 2,400 (the chaos suite's
///   overload probe; `claims_planned_on_an_empty_queue_look_rows_up_by_key`).
///   Sequential scans off: the planner takes them only when no index can
///   answer, which no ATP query on a big table is.
///
/// And JIT off. A plan the settings above disfavour but that has no other
/// path (the dead daemons' reap, an OR of two heartbeat ranges, is a bitmap
/// scan; a count of a small table is a sequential scan) carries their
/// penalty cost of 10^10, far above every `jit_*_above_cost`: PostgreSQL
/// then compiled, optimised and inlined it with LLVM at each execution,
/// 0.1–1 s of a core for a statement that runs in 50 µs. The reap runs every
/// heartbeat on every daemon: two daemons kept both cores of the test
/// machine busy and drained 64 tasks/s. ATP's statements are short; JIT
/// never pays for them (`no_statement_of_atps_is_jit_compiled`).
pub(super) const PLANNER_SETTINGS: [(&str, &str); 3] = [
    ("enable_bitmapscan", "off"),
    ("enable_seqscan", "off"),
    ("jit", "off"),
];

fn planner_options() -> String {
    PLANNER_SETTINGS
        .iter()
        .map(|(name, value)| format!("-c {name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The retry budget of one call.
struct Retries {
    started: Instant,
    pause: Duration,
    foreign_key: u32,
}

impl Retries {
    fn new() -> Self {
        Retries {
            started: Instant::now(),
            pause: Duration::from_millis(1),
            foreign_key: 0,
        }
    }

    /// Whether to run the work again after `e`; waits a little first, more
    /// each time, so that the transactions that collided stop colliding.
    async fn again(&mut self, e: &Error) -> bool {
        let retry = match sql_state(e) {
            Some(s) if *s == SqlState::T_R_SERIALIZATION_FAILURE => true,
            Some(s) if *s == SqlState::T_R_DEADLOCK_DETECTED => true,
            Some(s) if *s == SqlState::FOREIGN_KEY_VIOLATION => {
                self.foreign_key += 1;
                self.foreign_key <= FOREIGN_KEY_RETRIES
            }
            _ => false,
        };
        if !retry || self.started.elapsed() > RETRY_GIVE_UP {
            return false;
        }
        tracing::debug!(error = %e, "PostgreSQL transaction collided, retrying it");
        // Spread colliding retries apart without a random-number generator:
        // the sub-millisecond part of the clock is noise enough.
        let jitter = Duration::from_micros(u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_micros() % 1_000),
        ));
        tokio::time::sleep(self.pause + jitter).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(100));
        true
    }
}

pub(super) fn sql_state(e: &Error) -> Option<&SqlState> {
    let Error::Database { source, .. } = e else {
        return None;
    };
    source.downcast_ref::<tokio_postgres::Error>()?.code()
}

/// A connection to run statements on, inside a transaction or not, with the
/// pooled connection's prepared-statement cache. Copy, so that several
/// statements can be in flight on it at once (pipelined).
#[derive(Clone, Copy)]
pub(super) struct Conn<'a> {
    client: &'a tokio_postgres::Client,
    statements: &'a StatementCache,
    /// How far the handle's clock is ahead of the server's, in
    /// microseconds; 0 unless a test moved it (see [`Conn::prepare`]).
    clock_shift: i64,
}

/// Parameters of one statement.
pub(super) type Params<'p> = [&'p (dyn ToSql + Sync)];

impl<'a> Conn<'a> {
    fn of_client(client: &'a deadpool_postgres::ClientWrapper, clock_shift: i64) -> Self {
        Conn {
            client,
            statements: &client.statement_cache,
            clock_shift,
        }
    }

    fn of_transaction(tx: &'a deadpool_postgres::Transaction<'_>, clock_shift: i64) -> Self {
        Conn {
            client: tx.client(),
            statements: &tx.statement_cache,
            clock_shift,
        }
    }

    /// The prepared statement for `sql`, from the cache after the first use.
    ///
    /// Every statement reads the time as `now()`, the server's clock. When
    /// a test moved the handle's clock, each `now()` becomes the server's
    /// clock plus the shift, here, for every statement at once: writes and
    /// comparisons keep reading one clock. (The shifted text is a statement
    /// of its own in the cache; only tests ever shift.)
    pub(super) async fn prepare(self, context: &str, sql: &str) -> Result<Statement> {
        let shifted;
        let sql = if self.clock_shift == 0 {
            sql
        } else {
            shifted = sql.replace(
                "now()",
                &format!("(now() + {} * interval '1 microsecond')", self.clock_shift),
            );
            &shifted
        };
        self.statements
            .prepare(self.client, sql)
            .await
            .map_err(pg(context))
    }

    pub(super) async fn query(
        self,
        context: &str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>> {
        let statement = self.prepare(context, sql).await?;
        self.query_prepared(context, &statement, params).await
    }

    /// Runs a statement prepared beforehand. Its request goes out at the
    /// first poll, so several of these joined with `biased;` reach the
    /// server in order, in one round trip.
    pub(super) async fn query_prepared(
        self,
        context: &str,
        statement: &Statement,
        params: &Params<'_>,
    ) -> Result<Vec<Row>> {
        self.client
            .query(statement, params)
            .await
            .map_err(pg(context))
    }

    pub(super) async fn query_opt(
        self,
        context: &str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>> {
        let statement = self.prepare(context, sql).await?;
        self.client
            .query_opt(&statement, params)
            .await
            .map_err(pg(context))
    }

    pub(super) async fn query_one(
        self,
        context: &str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Row> {
        let statement = self.prepare(context, sql).await?;
        self.client
            .query_one(&statement, params)
            .await
            .map_err(pg(context))
    }

    pub(super) async fn execute(
        self,
        context: &str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<u64> {
        let statement = self.prepare(context, sql).await?;
        self.client
            .execute(&statement, params)
            .await
            .map_err(pg(context))
    }

    /// Runs several statements without parameters (migrations).
    pub(super) async fn batch_execute(self, context: &str, sql: &str) -> Result<()> {
        self.client.batch_execute(sql).await.map_err(pg(context))
    }
}

/// Maps a driver error to [`Error::Unavailable`] when the connection is gone
/// (the caller may back off and retry), otherwise to [`Error::Database`]
/// with what was being done.
pub(crate) fn pg(context: &str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |e| {
        if connection_lost(&e) {
            Error::Unavailable {
                message: format!("lost the PostgreSQL connection while {context}"),
                source: Box::new(e),
            }
        } else {
            Error::Database {
                context: context.to_owned(),
                source: Box::new(e),
            }
        }
    }
}

/// Closed connections, I/O errors, and the server's "connection exception"
/// and "shutting down / starting up / too many connections" states.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// A pool that cannot hand out a connection: the server is unreachable, or
/// every connection is busy for longer than [`POOL_WAIT`].
fn pool_error(e: PoolError) -> Error {
    match e {
        PoolError::Backend(e) => Error::Unavailable {
            message: "cannot connect to PostgreSQL".into(),
            source: Box::new(e),
        },
        e @ (PoolError::Timeout(_) | PoolError::Closed) => Error::Unavailable {
            message: "no PostgreSQL connection available".into(),
            source: Box::new(e),
        },
        e => Error::Database {
            context: "getting a PostgreSQL connection".into(),
            source: Box::new(e),
        },
    }
}

impl Store for PgStore {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    fn options(&self) -> StoreOptions {
        self.inner.options.clone()
    }

    async fn wait_for_tasks(&self, within: Duration) {
        self.inner.wakeups.wait(within).await;
    }

    async fn schema_version(&self) -> Result<u32> {
        statement!(self, |c| migrate::current_version(c))
    }

    async fn task_next_due(&self) -> Result<Option<Duration>> {
        statement!(self, |c| due::next_due(c))
    }

    async fn task_type_upsert(&self, task_type: &TaskType) -> Result<()> {
        task_type.validate()?;
        statement!(self, |c| task_type::upsert(c, task_type))?;
        let about = &task_type.about;
        let rev = about.input_schema_rev();
        self.inner.input_schemas.learn(&task_type.name, about, rev)
    }

    async fn task_type_get(&self, name: &TypeName) -> Result<TaskType> {
        statement!(self, |c| task_type::get(c, name))
    }

    async fn task_type_list(&self) -> Result<Vec<TaskType>> {
        statement!(self, |c| task_type::list(c))
    }

    async fn task_type_set_paused(&self, name: &TypeName, paused: bool) -> Result<TaskType> {
        transaction!(self, |c| task_type::set_paused(c, name, paused))
    }

    async fn task_type_delete(&self, name: &TypeName, force: bool) -> Result<u64> {
        let deleted = transaction!(self, |c| task_type::delete(c, name, force))?;
        self.inner.input_schemas.forget(name);
        Ok(deleted)
    }

    async fn task_enqueue(&self, new: NewTask) -> Result<Task> {
        let tasks = std::slice::from_ref(&new);
        let options = &self.inner.options;
        input_check::enqueue_checked(
            &self.inner.input_schemas,
            tasks,
            |revs| async move {
                let prepared = task::prepare(tasks, options, &revs)?;
                statement!(self, |c| task::enqueue_one(c, &prepared, options))
            },
            |t| async move { self.learn_input_schema(&t).await },
        )
        .await
    }

    async fn task_enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let options = &self.inner.options;
        let tasks = &tasks;
        let (ids, _, _) = input_check::enqueue_checked(
            &self.inner.input_schemas,
            tasks,
            |revs| async move {
                let prepared = task::prepare(tasks, options, &revs)?;
                statement!(self, |c| task::enqueue_many(c, &prepared, options))
            },
            |t| async move { self.learn_input_schema(&t).await },
        )
        .await?;
        Ok(ids)
    }

    async fn task_claim(&self, params: &ClaimParams) -> Result<Vec<ClaimedTask>> {
        let Some(params) = crate::shared::claim_params(params) else {
            return Ok(Vec::new());
        };
        let limited = self.limited();
        let (claimed, has_limits) = if limited {
            transaction!(self, |c| queue::claim(c, &params, true))?
        } else {
            statement!(self, |c| queue::claim(c, &params, false))?
        };
        self.set_limited(has_limits);
        Ok(claimed)
    }

    async fn task_claim_start(&self, params: &ClaimParams) -> Result<Vec<StartedTask>> {
        let Some(params) = crate::shared::claim_params(params) else {
            return Ok(Vec::new());
        };
        let limited = self.limited();
        let (started, has_limits) = if limited {
            transaction!(self, |c| queue::claim_start(c, &params, true))?
        } else {
            statement!(self, |c| queue::claim_start(c, &params, false))?
        };
        self.set_limited(has_limits);
        Ok(started)
    }

    async fn task_start_many(&self, attempts: &[Attempt]) -> Result<Vec<Result<StartedTask>>> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        transaction!(self, |c| queue::start_many(c, attempts))
    }

    async fn task_set_status_many(&self, changes: &[StatusChange]) -> Result<Vec<Result<()>>> {
        for change in changes {
            crate::shared::validate_change(change)?;
        }
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        transaction!(self, |c| queue::set_status_many(c, changes))
    }

    async fn task_heartbeat_many(&self, attempts: &[Attempt]) -> Result<Vec<Result<()>>> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        statement!(self, |c| queue::heartbeat_many(c, attempts))
    }

    async fn task_progress(&self, attempt: Attempt, progress: &Progress) -> Result<()> {
        let progress = crate::shared::validate_progress(progress)?;
        statement!(self, |c| queue::progress(c, attempt, &progress))
    }

    async fn task_response_put(&self, attempt: Attempt, response: &Response) -> Result<()> {
        atp_core::payload::validate_mime(&response.mime_type)?;
        statement!(self, |c| queue::response_put(c, attempt, response))
    }

    async fn task_get(&self, task: &TaskRef) -> Result<Task> {
        statement!(self, |c| task::get(c, task))
    }

    async fn task_input(&self, task: &TaskRef) -> Result<serde_json::Value> {
        statement!(self, |c| task::input(c, task))
    }

    async fn task_log(&self, task: &TaskRef) -> Result<Vec<LogRecord>> {
        statement!(self, |c| task::log(c, task))
    }

    async fn task_response_get(&self, task: &TaskRef) -> Result<Option<Response>> {
        statement!(self, |c| task::response_get(c, task))
    }

    async fn task_list(&self, filter: &TaskFilter) -> Result<TaskPage> {
        statement!(self, |c| list::list(c, filter))
    }

    async fn task_list_with_last_message(&self, filter: &TaskFilter) -> Result<TaskMessagePage> {
        statement!(self, |c| list::list_with_last_message(c, filter))
    }

    async fn task_counts(&self) -> Result<TaskCounts> {
        transaction!(self, |c| task::counts(c))
    }

    async fn queue_size(&self) -> Result<u64> {
        statement!(self, |c| task::queue_size(c))
    }

    async fn task_delete(&self, task: &TaskRef) -> Result<()> {
        statement!(self, |c| task::delete(c, task))
    }

    async fn task_reenqueue(&self, task: &TaskRef, message: &str) -> Result<Task> {
        transaction!(self, |c| task::reenqueue(c, task, message))
    }

    async fn task_reenqueue_all(&self, bulk: &BulkReenqueue) -> Result<u64> {
        transaction!(self, |c| bulk::reenqueue_all(c, bulk))
    }

    async fn task_cancel(&self, task: &TaskRef, message: Option<&str>) -> Result<Task> {
        transaction!(self, |c| cancel::cancel(c, task, message))
    }

    fn task_cancelled_watch(&self, holder: DaemonId) -> atp_core::CancelWatch {
        self.inner.wakeups.watch_cancelled(holder)
    }

    async fn task_requeue_abandoned(&self) -> Result<Vec<Rescued>> {
        transaction!(self, |c| reap::requeue_abandoned(c))
    }

    async fn task_delete_retired(&self, limit: u32) -> Result<Vec<Retired>> {
        let retired = transaction!(self, |c| reap::delete_retired(c, limit))?;
        // The daemons' periodic clean-up also keeps the count deltas few
        // when nobody reads the counts (migration 0016).
        statement!(self, |c| c.execute(
            "folding task counts",
            task::FOLD_COUNTS,
            &[]
        ))?;
        Ok(retired)
    }

    async fn daemon_register(&self, daemon: &DaemonInfo) -> Result<()> {
        statement!(self, |c| reap::daemon_register(c, daemon))?;
        // Checkable once the listener holds its lock (`liveness.rs`).
        let id = daemon.id.to_db();
        if self.inner.wakeups.hold_liveness(id).await {
            statement!(self, |c| reap::daemon_mark_checkable(c, id))
        } else {
            tracing::warn!(
                daemon = %daemon.id,
                "could not take this daemon's liveness lock: if it dies, its tasks wait for the long silence threshold"
            );
            Ok(())
        }
    }

    async fn daemon_heartbeat(&self, id: DaemonId) -> Result<bool> {
        statement!(self, |c| reap::daemon_heartbeat(c, id))
    }

    async fn daemon_deregister(&self, id: DaemonId) -> Result<()> {
        statement!(self, |c| reap::daemon_deregister(c, id))?;
        self.inner.wakeups.release_liveness(id.to_db());
        Ok(())
    }

    async fn daemon_list(&self) -> Result<Vec<DaemonInfo>> {
        statement!(self, |c| reap::daemon_list(c))
    }

    async fn daemon_reap_dead(&self, rule: DeadRule) -> Result<Vec<ReapedDaemon>> {
        atp_core::decide::check_silence(&rule)?;
        transaction!(self, |c| reap::daemon_reap_dead(c, rule))
    }

    async fn schedule_upsert(&self, schedule: &NewSchedule) -> Result<Schedule> {
        let prepared = crate::schedule::prepare(schedule, &self.inner.options)?;
        // Its occurrences' inputs are this one: checked once, here, against
        // the type's schema as it is now.
        self.learn_input_schema(&schedule.task_type).await?;
        self.inner
            .input_schemas
            .check_input(&schedule.task_type, &schedule.input)?;
        transaction!(self, |c| schedule::upsert(c, &prepared))
    }

    async fn schedule_get(&self, name: &ScheduleName) -> Result<Schedule> {
        statement!(self, |c| schedule::get(c, name))
    }

    async fn schedule_list(&self) -> Result<Vec<Schedule>> {
        statement!(self, |c| schedule::list(c))
    }

    async fn schedule_delete(&self, name: &ScheduleName) -> Result<()> {
        statement!(self, |c| schedule::delete(c, name))
    }

    async fn schedule_set_paused(&self, name: &ScheduleName, paused: bool) -> Result<Schedule> {
        transaction!(self, |c| schedule::set_paused(c, name, paused))
    }

    async fn schedule_enqueue(&self, occurrence: &ScheduleOccurrence) -> Result<ScheduleFired> {
        let options = &self.inner.options;
        match transaction!(self, |c| schedule::enqueue(c, occurrence, options)) {
            // Someone enqueued the same identifier by hand between the
            // look-up and the insert: the transaction, the advance with it,
            // rolled back; the next call finds the task and advances.
            Err(Error::DuplicateTask { .. }) => Ok(ScheduleFired::Existed),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
