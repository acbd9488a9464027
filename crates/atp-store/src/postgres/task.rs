//! Tasks: enqueue, look-ups, counts, delete and the operator's re-enqueue.

use std::collections::{HashMap, HashSet};

use atp_core::decide;
use atp_core::store::StoreOptions;
use atp_core::{
    Due, Error, LogRecord, Queued, Response, Result, Status, Task, TaskCounts, TaskId, TaskRef,
    payload,
};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::row;
use super::{Conn, Params};
use crate::shared::Prepared;

pub(super) use crate::shared::prepare_tasks as prepare;

/// Enqueues one prepared task and returns it as stored.
pub(super) async fn enqueue_one(
    c: Conn<'_>,
    prepared: &[Prepared],
    options: &StoreOptions,
) -> Result<Task> {
    let (ids, at, queued) = enqueue_many(c, prepared, options).await?;
    let p = &prepared[0];
    Ok(decide::enqueued(
        ids[0],
        p.task_type.clone(),
        p.identifier.clone(),
        at,
        queued,
    ))
}

/// Inserts every task and its first log record in one statement (arrays
/// unnested in input order, so ids ascend in input order). Any bad task
/// raises and aborts the transaction: an unknown type, or one whose input
/// schema revision is not the one the input was checked against
/// (`input_check.rs`; -1: unchecked), leaves `type_id` NULL (a not-null
/// violation), a duplicate breaks the unique key. A task's
/// priority is the one given or its type's; its due time the one given,
/// or now plus the delay given in microseconds (the database's clock, as
/// every other time), or now. Due later than now, it is `delayed` (out of
/// the claim's index until a claim finds it due: see `due.rs`).
const ENQUEUE: &str = "
WITH given AS (
    SELECT u.ord, y.id AS type_id, u.identifier, u.input, u.message,
        coalesce(u.priority, y.priority) AS priority,
        coalesce(u.due_at, now() + u.delay_us * interval '1 microsecond', now()) AS due_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::timestamptz[],
                $7::int8[], $8::int8[])
         WITH ORDINALITY AS u (type_name, identifier, input, message, priority, due_at, delay_us,
                               schema_rev, ord)
    LEFT JOIN atp_task_type y ON y.name = u.type_name
        AND (u.schema_rev = -1 OR y.input_schema_rev = u.schema_rev)
), inserted AS (
    INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at, enqueued_at, input,
        priority, due_at, delayed)
    SELECT type_id, identifier, 1, now(), now(), now(), input, priority, due_at, due_at > now()
    FROM given ORDER BY ord
    RETURNING id, type_id, identifier
), numbered AS (
    SELECT i.id, g.ord, g.message, g.priority, g.due_at
    FROM inserted i JOIN given g USING (type_id, identifier)
), logged AS (
    INSERT INTO atp_task_log (task_id, time, status, message)
    SELECT id, now(), 1, message FROM numbered ORDER BY ord
)
SELECT id, ord, now(), priority, due_at FROM numbered ORDER BY ord";

/// Counts the tasks in and raises `AQ001` when the queue overflows (see
/// migration 0014): takes the row lock of one of 16 'in' counter shards
/// (the connection's) on the fast path, so that up to 16 producers commit
/// side by side, or of all 16 on the exact path ($3, or near the limit).
const COUNT_IN: &str = "SELECT atp_count_in($1, $2, $3)";

/// Wakes listening daemons: sent after an enqueue's COMMIT, as a
/// transaction of its own. A notification inside the enqueue would take
/// PostgreSQL's global notification lock at commit and hold it through the
/// WAL flush, serializing every producer again (migration 0014). A
/// producer that dies between the two leaves its tasks to the daemons'
/// next poll.
const NOTIFY: &str = "SELECT pg_notify('atp_tasks', coalesce(current_schema(), ''))";

/// The SQLSTATE `atp_count_in` raises on a full queue.
const QUEUE_FULL: &str = "AQ001";

/// The SQLSTATE `atp_count_in` raises when the queue came near its limit
/// while a fast-path enqueue waited for its shard: the enqueue is run again
/// on the exact path.
const RUN_EXACT: &str = "AQ002";

/// Enqueues all prepared tasks or none; returns their ids in input order,
/// the enqueue time and where the first task went in the queue. Runs outside any transaction of the caller's: it
/// is its own.
///
/// One round trip: BEGIN, the insert, the queue count and COMMIT go out
/// together. Every failure raises inside the transaction, so the pipelined
/// COMMIT becomes a rollback; only then is the failure named (by
/// [`first_failure`]), outside the transaction. Every request is sent at
/// the first poll, so a caller that drops this future still leaves the
/// connection outside any transaction.
pub(super) async fn enqueue_many(
    c: Conn<'_>,
    prepared: &[Prepared],
    options: &StoreOptions,
) -> Result<(Vec<TaskId>, OffsetDateTime, Queued)> {
    const CONTEXT: &str = "enqueueing";
    let arrays = InsertArrays::of(prepared);
    let n = prepared.len() as i64;
    let limit = i64::try_from(options.max_queue_size).unwrap_or(i64::MAX);

    let (insert, count_in, notify) = tokio::try_join!(
        c.prepare(CONTEXT, ENQUEUE),
        c.prepare(CONTEXT, COUNT_IN),
        c.prepare(CONTEXT, NOTIFY),
    )?;
    let insert_params = &arrays.params();
    let mut exact = false;
    let rows = loop {
        let count_params: &Params<'_> = &[&n, &limit, &exact];
        // `join!`, not `try_join!`: a statement can fail within its own
        // first poll (when this thread was descheduled between sending and
        // polling), and `try_join!` would then return before the later
        // statements, COMMIT among them, were ever sent, leaving the
        // connection inside an aborted transaction. `join!` polls (and so
        // sends) all five, and waits for the last reply. The notification
        // goes out even when the transaction failed: a spurious wake-up
        // costs an idle daemon one empty claim.
        let (begun, inserted, counted, committed, notified) = tokio::join!(
            biased;
            c.batch_execute("beginning an enqueue", "BEGIN"),
            c.query_prepared(CONTEXT, &insert, insert_params),
            c.query_prepared("counting the queue", &count_in, count_params),
            c.batch_execute("committing an enqueue", "COMMIT"),
            c.query_prepared("waking the daemons", &notify, &[]),
        );
        let outcome = begun.and(inserted).and_then(|rows| {
            counted?;
            committed?;
            notified?;
            Ok(rows)
        });
        match outcome {
            Ok(rows) => break rows,
            Err(e) if !exact && super::sql_state(&e).is_some_and(|s| s.code() == RUN_EXACT) => {
                exact = true;
            }
            Err(e) => return Err(name_failure(c, prepared, options, e).await),
        }
    };
    let mut ids = Vec::with_capacity(prepared.len());
    let mut at = None;
    for r in &rows {
        ids.push(TaskId(row::get(r, 0)?));
        if at.is_none() {
            let queued = Queued {
                priority: row::get(r, 3)?,
                due_at: row::get(r, 4)?,
            };
            at = Some((row::get::<OffsetDateTime>(r, 2)?, queued));
        }
    }
    match at {
        Some((at, queued)) if ids.len() == prepared.len() => Ok((ids, at, queued)),
        _ => Err(Error::Corrupt(format!(
            "an enqueue of {} tasks committed {} log records",
            prepared.len(),
            ids.len()
        ))),
    }
}

/// Enqueues one prepared task inside the caller's transaction (a
/// schedule's occurrence, whose advance must commit with it): the same
/// insert and queue count as [`enqueue_many`], sent one after the other.
/// A full queue is `QueueFull` and a duplicate `DuplicateTask`; either
/// leaves the transaction aborted, for the caller to roll back.
pub(super) async fn enqueue_in_transaction(
    c: Conn<'_>,
    p: &Prepared,
    options: &StoreOptions,
) -> Result<Task> {
    let arrays = InsertArrays::of(std::slice::from_ref(p));
    let rows = match c.query("enqueueing", ENQUEUE, &arrays.params()).await {
        Err(e) if super::sql_state(&e) == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(Error::DuplicateTask {
                task_type: p.task_type.to_string(),
                identifier: p.identifier.to_string(),
            });
        }
        other => other?,
    };
    let limit = i64::try_from(options.max_queue_size).unwrap_or(i64::MAX);
    // The exact path at once: this transaction cannot be run again from
    // here. It notifies inside: a schedule's occurrences are few.
    let counted = c
        .query("counting the queue", COUNT_IN, &[&1i64, &limit, &true])
        .await;
    let counted = match counted {
        Ok(_) => c.query("waking the daemons", NOTIFY, &[]).await,
        Err(e) => Err(e),
    };
    if let Err(e) = counted {
        return Err(match super::sql_state(&e) {
            Some(s) if s.code() == QUEUE_FULL => Error::QueueFull {
                limit: options.max_queue_size,
            },
            _ => e,
        });
    }
    let r = rows
        .first()
        .ok_or_else(|| Error::Corrupt("an enqueue inserted no task".into()))?;
    Ok(decide::enqueued(
        TaskId(row::get(r, 0)?),
        p.task_type.clone(),
        p.identifier.clone(),
        row::get::<OffsetDateTime>(r, 2)?,
        Queued {
            priority: row::get(r, 3)?,
            due_at: row::get(r, 4)?,
        },
    ))
}

/// The parameters of [`ENQUEUE`]: one array per column, in input order.
struct InsertArrays<'a> {
    types: Vec<&'a str>,
    identifiers: Vec<&'a str>,
    inputs: Vec<&'a str>,
    messages: Vec<&'a str>,
    priorities: Vec<Option<i32>>,
    due_at: Vec<Option<OffsetDateTime>>,
    delay_us: Vec<Option<i64>>,
    schema_revs: Vec<i64>,
}

impl<'a> InsertArrays<'a> {
    fn of(prepared: &'a [Prepared]) -> Self {
        InsertArrays {
            types: prepared.iter().map(|p| p.task_type.as_str()).collect(),
            identifiers: prepared.iter().map(|p| p.identifier.as_str()).collect(),
            inputs: prepared.iter().map(|p| p.input.as_str()).collect(),
            messages: prepared.iter().map(|p| p.message.as_str()).collect(),
            priorities: prepared.iter().map(|p| p.priority).collect(),
            due_at: prepared
                .iter()
                .map(|p| match p.due {
                    Some(Due::At(t)) => Some(t),
                    _ => None,
                })
                .collect(),
            delay_us: prepared
                .iter()
                .map(|p| match p.due {
                    Some(Due::After(d)) => Some(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
                    _ => None,
                })
                .collect(),
            schema_revs: prepared.iter().map(|p| p.schema_rev).collect(),
        }
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 8] {
        [
            &self.types,
            &self.identifiers,
            &self.inputs,
            &self.messages,
            &self.priorities,
            &self.due_at,
            &self.delay_us,
            &self.schema_revs,
        ]
    }
}

/// Turns the error that aborted an enqueue into the caller's error kind.
async fn name_failure(
    c: Conn<'_>,
    prepared: &[Prepared],
    options: &StoreOptions,
    e: Error,
) -> Error {
    match super::sql_state(&e) {
        Some(s) if s.code() == QUEUE_FULL => Error::QueueFull {
            limit: options.max_queue_size,
        },
        Some(s) if *s == SqlState::UNIQUE_VIOLATION || *s == SqlState::NOT_NULL_VIOLATION => {
            match first_failure(c, prepared).await {
                Ok(Some(named)) => named,
                // The conflicting row went away meanwhile: report what the
                // database said rather than guess.
                Ok(None) => e,
                Err(lookup) => lookup,
            }
        }
        _ => e,
    }
}

/// Names why a batch was refused: the first unknown type in input order,
/// else the first type whose input schema changed since the check, else
/// the first task already in the table or repeated in the batch.
async fn first_failure(c: Conn<'_>, prepared: &[Prepared]) -> Result<Option<Error>> {
    let names: Vec<&str> = prepared.iter().map(|p| p.task_type.as_str()).collect();
    let identifiers: Vec<&str> = prepared.iter().map(|p| p.identifier.as_str()).collect();
    let known: HashMap<String, i64> = c
        .query(
            "looking up task types",
            "SELECT name, input_schema_rev FROM atp_task_type WHERE name = ANY($1)",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| Ok((row::get(r, 0)?, row::get(r, 1)?)))
        .collect::<Result<_>>()?;
    for p in prepared {
        match known.get(p.task_type.as_str()) {
            None => return Ok(Some(Error::TypeNotFound(p.task_type.to_string()))),
            Some(&rev) if p.schema_rev != crate::shared::UNCHECKED_REV && rev != p.schema_rev => {
                return Ok(Some(Error::TypeChanged {
                    task_type: p.task_type.to_string(),
                }));
            }
            Some(_) => {}
        }
    }
    let existing: HashSet<(String, String)> = c
        .query(
            "looking up duplicate tasks",
            "SELECT y.name, t.identifier
             FROM unnest($1::text[], $2::text[]) AS u (type_name, identifier)
             JOIN atp_task_type y ON y.name = u.type_name
             JOIN atp_task t ON t.type_id = y.id AND t.identifier = u.identifier",
            &[&names, &identifiers],
        )
        .await?
        .iter()
        .map(|r| Ok((row::get(r, 0)?, row::get(r, 1)?)))
        .collect::<Result<_>>()?;
    let mut seen = HashSet::new();
    for p in prepared {
        let key = (p.task_type.to_string(), p.identifier.to_string());
        if existing.contains(&key) || !seen.insert(key) {
            return Ok(Some(Error::DuplicateTask {
                task_type: p.task_type.to_string(),
                identifier: p.identifier.to_string(),
            }));
        }
    }
    Ok(None)
}

/// ACCEPTED tasks, from the two counters (no row scan), read in one snapshot.
pub(super) async fn queue_size(c: Conn<'_>) -> Result<u64> {
    let r = c
        .query_one(
            "reading the queue size",
            "SELECT (SELECT sum(value) FROM atp_queue_counter WHERE name = 'in')::int8
                  - (SELECT sum(value) FROM atp_queue_counter WHERE name = 'out')::int8",
            &[],
        )
        .await?;
    let n: i64 = row::get(&r, 0)?;
    Ok(n.max(0) as u64)
}

/// Runs `sql` with `{task}` replaced by the condition that names `task` in
/// a query over [`row::TASK_FROM`] (`t` the task, `y` its type).
pub(super) async fn by_ref(
    c: Conn<'_>,
    context: &str,
    sql: &str,
    task: &TaskRef,
) -> Result<Vec<Row>> {
    match task {
        TaskRef::Id(id) => {
            c.query(context, &sql.replace("{task}", "t.id = $1"), &[&id.0])
                .await
        }
        TaskRef::Key(t, i) => {
            let sql = sql.replace("{task}", "y.name = $1 AND t.identifier = $2");
            c.query(context, &sql, &[&t.as_str(), &i.as_str()]).await
        }
    }
}

fn not_found(task: &TaskRef) -> Error {
    Error::TaskNotFound(task.to_string())
}

pub(super) async fn get(c: Conn<'_>, task: &TaskRef) -> Result<Task> {
    let sql = format!(
        "SELECT {} FROM {} WHERE {{task}}",
        row::TASK_COLUMNS,
        row::TASK_FROM
    );
    let rows = by_ref(c, "reading a task", &sql, task).await?;
    rows.first().map_or_else(|| Err(not_found(task)), row::task)
}

pub(super) async fn input(c: Conn<'_>, task: &TaskRef) -> Result<serde_json::Value> {
    let sql = format!("SELECT t.input FROM {} WHERE {{task}}", row::TASK_FROM);
    let rows = by_ref(c, "reading a task's input", &sql, task).await?;
    let raw: String = rows
        .first()
        .map_or_else(|| Err(not_found(task)), |r| row::get(r, 0))?;
    serde_json::from_str(&raw).map_err(|e| Error::Corrupt(format!("stored input is not JSON: {e}")))
}

/// Oldest first: log ids grow with time.
pub(super) async fn log(c: Conn<'_>, task: &TaskRef) -> Result<Vec<LogRecord>> {
    let sql = format!(
        "SELECT l.time, l.status, l.message FROM {} LEFT JOIN atp_task_log l ON l.task_id = t.id
         WHERE {{task}} ORDER BY l.id",
        row::TASK_FROM
    );
    let rows = by_ref(c, "reading a task's log", &sql, task).await?;
    if rows.is_empty() {
        return Err(not_found(task));
    }
    let mut records = Vec::with_capacity(rows.len());
    for r in &rows {
        // A task with no log record yet comes back as one row of NULLs.
        let Some(time) = row::get::<Option<OffsetDateTime>>(r, 0)? else {
            continue;
        };
        records.push(LogRecord {
            time,
            status: row::status_of(row::get(r, 1)?)?,
            message: row::get(r, 2)?,
        });
    }
    Ok(records)
}

pub(super) async fn response_get(c: Conn<'_>, task: &TaskRef) -> Result<Option<Response>> {
    let sql = format!(
        "SELECT r.mime_type, r.encoding, r.body FROM {}
         LEFT JOIN atp_task_response r ON r.task_id = t.id WHERE {{task}}",
        row::TASK_FROM
    );
    let rows = by_ref(c, "reading a response", &sql, task).await?;
    let r = rows.first().ok_or_else(|| not_found(task))?;
    let Some(mime_type) = row::get::<Option<String>>(r, 0)? else {
        return Ok(None);
    };
    let encoding: i16 = row::get(r, 1)?;
    let body: Vec<u8> = row::get(r, 2)?;
    Ok(Some(Response {
        body: payload::decode(payload::Encoding::from_code(encoding.into())?, body)?,
        mime_type,
    }))
}

/// Folds the pending count deltas into `atp_task_count` (migration 0016):
/// one statement that deletes the deltas it adds, so two folds at once add
/// each delta once; count rows are upserted in key order (no lock cycles
/// between two folds).
pub(super) const FOLD_COUNTS: &str = "
WITH moved AS (
    DELETE FROM atp_task_count_delta RETURNING type_id, status, n
)
INSERT INTO atp_task_count AS c (type_id, status, n)
SELECT type_id, status, sum(n) FROM moved GROUP BY type_id, status ORDER BY type_id, status
ON CONFLICT (type_id, status) DO UPDATE SET n = c.n + excluded.n";

/// The folded counts (see [`counts`]).
pub(super) const COUNTS: &str = "
SELECT y.name, c.status, c.n FROM atp_task_count c JOIN atp_task_type y ON y.id = c.type_id
WHERE c.n <> 0 ORDER BY y.name COLLATE \"C\", c.status";

/// Per (type, status), types in byte order of their names as SQLite sorts,
/// from the counts the triggers of migration 0016 keep (never a count of
/// the task table: the cost is the same with 10 or 10,000,000 tasks). Run in
/// a transaction: the fold, then the read, which sees it.
pub(super) async fn counts(c: Conn<'_>) -> Result<TaskCounts> {
    c.execute("folding task counts", FOLD_COUNTS, &[]).await?;
    let rows = c.query("counting tasks", COUNTS, &[]).await?;
    let mut counts = TaskCounts::default();
    for r in &rows {
        let n: i64 = row::get(r, 2)?;
        counts.by_type.push((
            row::type_name(row::get(r, 0)?)?,
            row::status_of(row::get(r, 1)?)?,
            n as u64,
        ));
    }
    counts.by_status = crate::shared::sum_by_status(&counts.by_type);
    Ok(counts)
}

/// One statement. The status comes from the row as deleted, so a task
/// claimed while the delete waited for its lock is not counted out of the
/// queue twice.
pub(super) async fn delete(c: Conn<'_>, task: &TaskRef) -> Result<()> {
    let rows = by_ref(
        c,
        "deleting a task",
        "WITH deleted AS (
             DELETE FROM atp_task t USING atp_task_type y
             WHERE y.id = t.type_id AND {task} RETURNING t.status
         ), counted AS (
             UPDATE atp_queue_counter SET value = value + 1
             WHERE name = 'out' AND shard = 0 AND EXISTS (SELECT 1 FROM deleted WHERE status = 1)
         )
         SELECT status FROM deleted",
        task,
    )
    .await?;
    if rows.is_empty() {
        return Err(not_found(task));
    }
    Ok(())
}

/// Locks the task, checks the move, then resets it in one statement that
/// also logs it, counts the queue entry and notifies `atp_tasks`.
pub(super) async fn reenqueue(c: Conn<'_>, task: &TaskRef, message: &str) -> Result<Task> {
    let sql = format!(
        "SELECT t.id, t.status FROM {} WHERE {{task}} FOR NO KEY UPDATE OF t",
        row::TASK_FROM
    );
    let rows = by_ref(c, "locking a task", &sql, task).await?;
    let r = rows.first().ok_or_else(|| not_found(task))?;
    let id: i64 = row::get(r, 0)?;
    let status = row::status_of(row::get(r, 1)?)?;
    let decided = decide::reenqueue(TaskId(id), status, message)?;
    let sql = format!(
        "WITH t AS (
             UPDATE atp_task SET status = 1, holder = NULL, starts = 0, progress_percent = NULL,
                 progress_message = NULL, updated_at = now(), enqueued_at = now(), due_at = now(),
                 delayed = false
             WHERE id = $1 AND status = $2 RETURNING *
         ), logged AS (
             INSERT INTO atp_task_log (task_id, time, status, message) SELECT id, now(), 1, $3 FROM t
         ), counted AS (
             UPDATE atp_queue_counter SET value = value + 1
             WHERE name = 'in' AND shard = 0 AND EXISTS (SELECT 1 FROM t)
             RETURNING pg_notify('atp_tasks', coalesce(current_schema(), ''))
         )
         SELECT {} FROM t JOIN atp_task_type y ON y.id = t.type_id",
        row::TASK_COLUMNS
    );
    let rows = c
        .query(
            "re-enqueueing a task",
            &sql,
            &[&id, &row::code(decided.from), &decided.message],
        )
        .await?;
    rows.first().map_or_else(|| Err(not_found(task)), row::task)
}

/// Status changes decided on rows the caller has locked: the final status
/// of each task, and every log record in order.
#[derive(Default)]
pub(super) struct Changes {
    /// One entry per task (see [`Final`]).
    finals: Vec<Final>,
    /// Where each task is in `finals`.
    index: HashMap<i64, usize>,
    log_tasks: Vec<i64>,
    log_statuses: Vec<i16>,
    log_messages: Vec<String>,
    /// Entries into ACCEPTED, for the queue counter.
    entries: i64,
}

/// What a batch leaves of one task: its final status, how long after now
/// it is due when that is ACCEPTED (microseconds; a retry's back-off),
/// whether its holder is cleared ([`decide::Move::clears_holder`]) and it
/// keeps its place in the queue ([`decide::Move::keeps_place`]), and how
/// many starts the batch counts.
struct Final {
    task: i64,
    status: Status,
    delay_us: i64,
    clears: bool,
    keeps_place: bool,
    starts: i32,
}

impl Changes {
    /// Records that `task` moves to `status` with `message`; a later change
    /// of the same task in the batch overrides its final status.
    pub(super) fn push(&mut self, task: i64, decided: &decide::Move) {
        let (status, message) = (decided.to, decided.message.clone());
        let mut next = Final {
            task,
            status,
            delay_us: crate::shared::delay_micros(decided),
            clears: decided.clears_holder,
            keeps_place: decided.keeps_place,
            starts: i32::from(decided.counts_start),
        };
        match self.index.get(&task) {
            Some(&at) => {
                // A later move of the same batch decides the status; a
                // cleared holder stays cleared, counted starts add up.
                let earlier = &self.finals[at];
                next.clears |= earlier.clears;
                next.starts += earlier.starts;
                self.finals[at] = next;
            }
            None => {
                self.index.insert(task, self.finals.len());
                self.finals.push(next);
            }
        }
        self.log_tasks.push(task);
        self.log_statuses.push(row::code(status));
        self.log_messages.push(message);
        if status == Status::Accepted {
            self.entries += 1;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.finals.is_empty()
    }
}

/// Writes [`Changes`] in one statement: every row, every log record (in
/// order, so log ids follow the batch) and the queue counter. A task that
/// enters ACCEPTED loses its holder and re-enters the FIFO at the back
/// (unless it keeps its place), and the counter update then notifies
/// `atp_tasks` (delivered at commit; a data-modifying CTE runs, RETURNING
/// included, even when nothing reads it).
const WRITE_CHANGES: &str = "
WITH changed AS (
    UPDATE atp_task t SET status = s.status, updated_at = now(), starts = t.starts + s.starts,
        holder = CASE WHEN s.clears THEN NULL ELSE t.holder END,
        enqueued_at = CASE WHEN s.status = 1 AND NOT s.keep THEN now() ELSE t.enqueued_at END,
        due_at = CASE WHEN s.status = 1 AND NOT s.keep
                 THEN now() + s.delay_us * interval '1 microsecond' ELSE t.due_at END,
        delayed = CASE WHEN s.status = 1 AND NOT s.keep THEN s.delay_us > 0 ELSE t.delayed END
    FROM unnest($1::int8[], $2::int2[], $7::int8[], $8::bool[], $9::bool[], $10::int4[])
        AS s (id, status, delay_us, clears, keep, starts)
    WHERE t.id = s.id
    RETURNING t.id
), logged AS (
    INSERT INTO atp_task_log (task_id, time, status, message)
    SELECT id, now(), status, message
    FROM unnest($3::int8[], $4::int2[], $5::text[]) WITH ORDINALITY AS l (id, status, message, ord)
    ORDER BY ord
), counted AS (
    UPDATE atp_queue_counter SET value = value + $6::int8 WHERE name = 'in' AND shard = 0 AND $6::int8 > 0
    RETURNING pg_notify('atp_tasks', coalesce(current_schema(), ''))
)
SELECT count(*) FROM changed";

pub(super) async fn write_changes(c: Conn<'_>, changes: &Changes) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = changes.finals.iter().map(|f| f.task).collect();
    let statuses: Vec<i16> = changes.finals.iter().map(|f| row::code(f.status)).collect();
    let delays: Vec<i64> = changes.finals.iter().map(|f| f.delay_us).collect();
    let clears: Vec<bool> = changes.finals.iter().map(|f| f.clears).collect();
    let keeps: Vec<bool> = changes.finals.iter().map(|f| f.keeps_place).collect();
    let starts: Vec<i32> = changes.finals.iter().map(|f| f.starts).collect();
    let params: &Params<'_> = &[
        &ids,
        &statuses,
        &changes.log_tasks,
        &changes.log_statuses,
        &changes.log_messages,
        &changes.entries,
        &delays,
        &clears,
        &keeps,
        &starts,
    ];
    let r = c
        .query_one("changing task statuses", WRITE_CHANGES, params)
        .await?;
    let changed: i64 = row::get(&r, 0)?;
    if changed as usize != ids.len() {
        return Err(Error::Corrupt(format!(
            "{changed} of {} locked tasks were updated",
            ids.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use atp_core::{
        DaemonId, Handler, NewTask, Status, StatusChange, Store, StoreExt, StoreOptions,
        TaskFilter, TaskIdentifier, TaskType, TypeName, messages,
    };

    use super::*;
    use crate::postgres::PgStore;
    use crate::testing::{PgDb, TestDb};

    const HOLDER: DaemonId = DaemonId(0xDEAD_BEEF_0000_0001);

    fn name(raw: &str) -> TypeName {
        TypeName::new(raw).unwrap()
    }

    fn new_task(t: &str, id: &str) -> NewTask {
        NewTask::new(name(t), TaskIdentifier::new(id).unwrap())
    }

    /// A fresh schema with type `t`, and a handle on it with `options`.
    async fn with_type(options: StoreOptions) -> Option<(PgDb, PgStore)> {
        let db = PgDb::new().await?;
        let store = db.open(options).await;
        let t = TaskType::new(name("t"), Handler::new("builtin:noop").unwrap());
        store.task_type_upsert(&t).await.unwrap();
        Some((db, store))
    }

    #[tokio::test]
    async fn enqueue_claim_start_finish_round_trip() {
        let Some((_db, store)) = with_type(StoreOptions::default()).await else {
            return;
        };
        let s = &store;
        let input = serde_json::json!({"a": [1, 2], "ü": "日本"});
        let task = s
            .task_enqueue(new_task("t", "x").with_input(input.clone()))
            .await
            .unwrap();
        assert_eq!(s.task_get(&TaskRef::Id(task.id)).await.unwrap(), task);
        assert_eq!(s.queue_size().await.unwrap(), 1);

        let claimed = s
            .task_claim(&atp_core::ClaimParams::new(HOLDER, 10))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        let a = claimed[0].attempt;
        assert_eq!((a.task, a.holder, a.lease), (task.id, HOLDER, 1));
        assert_eq!(s.queue_size().await.unwrap(), 0);

        let started = s.task_start(a).await.unwrap();
        assert_eq!((started.start, &started.input), (1, &input));
        let response = Response::new("application/octet-stream", vec![9u8; 1000]);
        s.task_set_status(StatusChange::finish(a, "done").with_response(response.clone()))
            .await
            .unwrap();

        let done = s.task_get(&task.key()).await.unwrap();
        assert_eq!(
            (done.status, done.starts, done.holder),
            (Status::Finished, 1, Some(HOLDER))
        );
        assert_eq!(s.task_input(&task.key()).await.unwrap(), input);
        assert_eq!(
            s.task_response_get(&task.key()).await.unwrap(),
            Some(response)
        );
        let log: Vec<_> = s
            .task_log(&task.key())
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.status, r.message))
            .collect();
        assert_eq!(
            log,
            [
                (Status::Accepted, messages::ENQUEUED.to_owned()),
                (Status::Scheduled, format!("Scheduled by {HOLDER}")),
                (Status::Running, messages::started(HOLDER, 1, 3)),
                (Status::Finished, "done".to_owned()),
            ]
        );

        let again = s.task_reenqueue(&task.key(), "").await.unwrap();
        assert_eq!(
            (again.status, again.starts, again.holder),
            (Status::Accepted, 0, None)
        );
        assert!(again.enqueued_at > task.enqueued_at);
        assert_eq!(s.queue_size().await.unwrap(), 1);
        s.task_delete(&task.key()).await.unwrap();
        assert_eq!(s.queue_size().await.unwrap(), 0);
        assert!(s.task_log(&task.key()).await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn a_batch_keeps_input_order_and_fails_whole_on_a_duplicate() {
        let Some((_db, store)) = with_type(StoreOptions::default()).await else {
            return;
        };
        let s = &store;
        let batch: Vec<_> = (0..50)
            .rev()
            .map(|i| new_task("t", &format!("b{i}")))
            .collect();
        let ids = s.task_enqueue_many(batch).await.unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let first = s.task_get(&TaskRef::Id(ids[0])).await.unwrap();
        assert_eq!(first.identifier.as_str(), "b49");

        let in_batch = vec![
            new_task("t", "n1"),
            new_task("t", "n2"),
            new_task("t", "n1"),
        ];
        let err = s.task_enqueue_many(in_batch).await.unwrap_err();
        assert!(
            matches!(&err, Error::DuplicateTask { identifier, .. } if identifier == "n1"),
            "{err:?}"
        );
        let existing = vec![new_task("t", "n3"), new_task("t", "b7")];
        let err = s.task_enqueue_many(existing).await.unwrap_err();
        assert!(
            matches!(&err, Error::DuplicateTask { identifier, .. } if identifier == "b7"),
            "{err:?}"
        );
        let unknown = vec![
            new_task("t", "n4"),
            new_task("nope", "n5"),
            new_task("t", "b8"),
        ];
        let err = s.task_enqueue_many(unknown).await.unwrap_err();
        assert!(
            matches!(&err, Error::TypeNotFound(t) if t == "nope"),
            "{err:?}"
        );
        assert_eq!(
            s.queue_size().await.unwrap(),
            50,
            "nothing of the failed batches"
        );
        assert_eq!(s.task_counts().await.unwrap().total(), 50);
        let n2 = TaskRef::Key(name("t"), TaskIdentifier::new("n2").unwrap());
        assert!(s.task_get(&n2).await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn the_queue_limit_counts_the_whole_batch_and_claims_make_room() {
        let limited = StoreOptions {
            max_queue_size: 3,
            ..StoreOptions::default()
        };
        let Some((_db, store)) = with_type(limited).await else {
            return;
        };
        let s = &store;
        s.task_enqueue_many(vec![new_task("t", "1"), new_task("t", "2")])
            .await
            .unwrap();
        let err = s
            .task_enqueue_many(vec![new_task("t", "3"), new_task("t", "4")])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::QueueFull { limit: 3 }), "{err:?}");
        s.task_enqueue(new_task("t", "3")).await.unwrap();
        assert!(s.task_enqueue(new_task("t", "4")).await.is_err());
        s.task_claim(&atp_core::ClaimParams::new(HOLDER, 1))
            .await
            .unwrap();
        s.task_enqueue(new_task("t", "4")).await.unwrap();
        assert_eq!(s.queue_size().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn listing_pages_by_keyset_and_sorts_names_bytewise() {
        let Some((_db, store)) = with_type(StoreOptions::default()).await else {
            return;
        };
        let s = &store;
        for t in ["b", "B", "a", "Z"] {
            s.task_type_upsert(&TaskType::new(name(t), Handler::new("h").unwrap()))
                .await
                .unwrap();
        }
        let names: Vec<_> = s
            .task_type_list()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.into_string())
            .collect();
        assert_eq!(names, ["B", "Z", "a", "b", "t"]);
        let batch = (0..25).map(|i| new_task("t", &format!("{i}"))).collect();
        s.task_enqueue_many(batch).await.unwrap();
        let mut seen = Vec::new();
        let mut filter = TaskFilter {
            limit: 10,
            status: Some(Status::Accepted),
            task_type: Some(name("t")),
            ..TaskFilter::default()
        };
        loop {
            let page = s.task_list(&filter).await.unwrap();
            seen.extend(page.tasks.iter().map(|t| t.id));
            match page.next {
                Some(next) => filter.after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25);
        assert!(seen.windows(2).all(|w| w[0] > w[1]), "same time, id desc");
        filter.task_type = Some(name("missing"));
        assert!(s.task_list(&filter).await.unwrap_err().is_not_found());
    }
}
