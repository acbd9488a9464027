//! Tasks: enqueue, look-ups, counts, delete and the operator's re-enqueue.

use std::collections::HashMap;

use atp_core::decide;
use atp_core::store::StoreOptions;
use atp_core::time::{from_micros, to_micros};
use atp_core::{
    DaemonId, Due, Error, LogRecord, Queued, Response, Result, Status, Task, TaskCounts, TaskId,
    TaskRef, payload,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};

use super::{db, row, task_type};
use crate::shared::Prepared;

pub(super) use crate::shared::prepare_tasks as prepare;

/// Enqueues one prepared task and returns it as stored.
pub(super) fn enqueue_one(
    tx: &Transaction<'_>,
    prepared: &[Prepared],
    options: &StoreOptions,
    now: i64,
) -> Result<Task> {
    let (ids, places) = enqueue_placed(tx, prepared, options, now)?;
    let p = &prepared[0];
    Ok(decide::enqueued(
        ids[0],
        p.task_type.clone(),
        p.identifier.clone(),
        from_micros(now),
        Queued {
            priority: places[0].priority,
            due_at: from_micros(places[0].due_at),
        },
    ))
}

/// Where a task goes in the queue: its priority and due time (micros), and
/// whether it waits for that time out of the claim's way (`delayed`).
#[derive(Clone, Copy)]
struct Place {
    priority: i32,
    due_at: i64,
}

impl Place {
    fn of(p: &Prepared, type_priority: i32, now: i64) -> Place {
        let due_at = match p.due {
            None => now,
            Some(Due::At(t)) => to_micros(t),
            Some(Due::After(d)) => {
                now.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            }
        };
        Place {
            priority: p.priority.unwrap_or(type_priority),
            due_at,
        }
    }
}

/// Enqueues all prepared tasks or none.
pub(super) fn enqueue_many(
    tx: &Transaction<'_>,
    prepared: &[Prepared],
    options: &StoreOptions,
    now: i64,
) -> Result<Vec<TaskId>> {
    Ok(enqueue_placed(tx, prepared, options, now)?.0)
}

/// [`enqueue_many`], also returning where each task went.
fn enqueue_placed(
    tx: &Transaction<'_>,
    prepared: &[Prepared],
    options: &StoreOptions,
    now: i64,
) -> Result<(Vec<TaskId>, Vec<Place>)> {
    if options.max_queue_size > 0 {
        let queued = queue_size(tx)?;
        if queued + prepared.len() as u64 > options.max_queue_size {
            // A task that is there already is named first (as PostgreSQL's
            // insert does): a producer resending what it enqueued learns it
            // is in, instead of backing off from a full queue for ever.
            if let Some(duplicate) = duplicate_of(tx, prepared)? {
                return Err(duplicate);
            }
            return Err(Error::QueueFull {
                limit: options.max_queue_size,
            });
        }
    }
    // Each type's id, default priority and input schema revision, read once.
    let mut types: HashMap<&str, (i64, i32, i64)> = HashMap::new();
    for p in prepared {
        let (_, _, rev) = match types.get(p.task_type.as_str()) {
            Some(&known) => known,
            None => {
                let known = task_type::for_enqueue(tx, &p.task_type)?;
                types.insert(p.task_type.as_str(), known);
                known
            }
        };
        // Checked against another input schema than the type's now
        // (input_check.rs): refused, for the caller to check again.
        if p.schema_rev != crate::shared::UNCHECKED_REV && p.schema_rev != rev {
            return Err(Error::TypeChanged {
                task_type: p.task_type.to_string(),
            });
        }
    }
    let places: Vec<Place> = prepared
        .iter()
        .map(|p| Place::of(p, types[p.task_type.as_str()].1, now))
        .collect();
    let mut ids = Vec::with_capacity(prepared.len());
    let mut chunks = prepared.chunks_exact(ROWS_PER_INSERT);
    let mut at = 0;
    for chunk in &mut chunks {
        let placed = &places[at..at + chunk.len()];
        insert_chunk(tx, chunk, placed, &types, now, &mut ids)?;
        at += chunk.len();
    }
    for p in chunks.remainder() {
        let placed = std::slice::from_ref(&places[at]);
        insert_chunk(tx, std::slice::from_ref(p), placed, &types, now, &mut ids)?;
        at += 1;
    }
    count_queue_entries(tx, prepared.len() as i64)?;
    Ok((ids, places))
}

/// Rows per multi-row INSERT in a batch enqueue: one statement step per 32
/// tasks instead of one per task (the remainder goes one row at a time, so
/// only two statement shapes are ever cached).
const ROWS_PER_INSERT: usize = 32;

/// `INSERT … VALUES (…), (…)` with `rows` rows: `?1` is the time, then six
/// parameters (type id, identifier, input, priority, due time, delayed) or
/// two (task id, message) a row.
fn multi_row_sql(head: &str, row: impl Fn(usize) -> String, tail: &str, rows: usize) -> String {
    let values: Vec<String> = (0..rows).map(row).collect();
    format!("{head} VALUES {} {tail}", values.join(", "))
}

/// Inserts one chunk of tasks and their log records; a duplicate (in the
/// table or earlier in the batch) fails the whole call.
fn insert_chunk(
    tx: &Transaction<'_>,
    chunk: &[Prepared],
    places: &[Place],
    types: &HashMap<&str, (i64, i32, i64)>,
    now: i64,
    ids: &mut Vec<TaskId>,
) -> Result<()> {
    let n = chunk.len();
    let sql = multi_row_sql(
        "INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at, enqueued_at,
             input, priority, due_at, delayed)",
        |i| {
            let at = |k: usize| 2 + 6 * i + k;
            format!(
                "(?{}, ?{}, 1, ?1, ?1, ?1, ?{}, ?{}, ?{}, ?{})",
                at(0),
                at(1),
                at(2),
                at(3),
                at(4),
                at(5)
            )
        },
        "ON CONFLICT (type_id, identifier) DO NOTHING RETURNING id",
        n,
    );
    let mut args: Vec<Value> = Vec::with_capacity(1 + 6 * n);
    args.push(Value::Integer(now));
    for (p, place) in chunk.iter().zip(places) {
        args.push(Value::Integer(types[p.task_type.as_str()].0));
        args.push(Value::Text(p.identifier.as_str().to_owned()));
        args.push(Value::Text(p.input.clone()));
        args.push(Value::Integer(i64::from(place.priority)));
        args.push(Value::Integer(place.due_at));
        args.push(Value::Integer(i64::from(place.due_at > now)));
    }
    let mut inserted: Vec<i64> = tx
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_map(params_from_iter(args), |r| r.get(0))?.collect())
        .map_err(db("enqueueing"))?;
    if inserted.len() != n {
        return Err(first_duplicate(tx, chunk, types, &inserted));
    }
    // Rowids are assigned in VALUES order; RETURNING order is not promised.
    inserted.sort_unstable();
    let sql = multi_row_sql(
        "INSERT INTO atp_task_log (task_id, time, status, message)",
        |i| format!("(?{}, ?1, 1, ?{})", 2 + 2 * i, 3 + 2 * i),
        "",
        n,
    );
    let mut args: Vec<Value> = Vec::with_capacity(1 + 2 * n);
    args.push(Value::Integer(now));
    for (id, p) in inserted.iter().zip(chunk) {
        args.push(Value::Integer(*id));
        args.push(Value::Text(p.message.clone()));
    }
    tx.prepare_cached(&sql)
        .and_then(|mut s| s.execute(params_from_iter(args)))
        .map_err(db("logging an enqueue"))?;
    ids.extend(inserted.into_iter().map(TaskId));
    Ok(())
}

/// The refusal of the first task of `prepared` that exists already or is
/// repeated in it, if any (read only: for the refusal path of a full queue).
fn duplicate_of(tx: &Transaction<'_>, prepared: &[Prepared]) -> Result<Option<Error>> {
    let mut seen = std::collections::HashSet::new();
    for p in prepared {
        let (type_id, _, _) = task_type::for_enqueue(tx, &p.task_type)?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM atp_task WHERE type_id = ?1 AND identifier = ?2")
            .and_then(|mut s| s.exists(params![type_id, p.identifier.as_str()]))
            .map_err(db("looking for a duplicate task"))?;
        if exists || !seen.insert((type_id, p.identifier.as_str())) {
            return Ok(Some(Error::DuplicateTask {
                task_type: p.task_type.to_string(),
                identifier: p.identifier.to_string(),
            }));
        }
    }
    Ok(None)
}

/// Names the task of `chunk` that was not inserted: already in the table,
/// or repeated within the chunk.
fn first_duplicate(
    tx: &Transaction<'_>,
    chunk: &[Prepared],
    types: &HashMap<&str, (i64, i32, i64)>,
    inserted: &[i64],
) -> Error {
    let mut seen = std::collections::HashSet::new();
    for p in chunk {
        let key = (types[p.task_type.as_str()].0, p.identifier.as_str());
        let existing: Option<i64> = tx
            .prepare_cached("SELECT id FROM atp_task WHERE type_id = ?1 AND identifier = ?2")
            .and_then(|mut s| s.query_row(params![key.0, key.1], |r| r.get(0)).optional())
            .unwrap_or(None);
        let inserted_now = existing.is_some_and(|id| inserted.contains(&id));
        if !seen.insert(key) || !inserted_now {
            return Error::DuplicateTask {
                task_type: p.task_type.to_string(),
                identifier: p.identifier.to_string(),
            };
        }
    }
    Error::Corrupt(
        "a batch enqueue inserted fewer rows than it was given, with no duplicate".into(),
    )
}

/// Adds `n` entries into ACCEPTED to the queue counter.
pub(super) fn count_queue_entries(tx: &Transaction<'_>, n: i64) -> Result<()> {
    bump_counter(tx, "in", n)
}

/// Adds `n` exits from ACCEPTED to the queue counter.
pub(super) fn count_queue_exits(tx: &Transaction<'_>, n: i64) -> Result<()> {
    bump_counter(tx, "out", n)
}

fn bump_counter(tx: &Transaction<'_>, name: &str, n: i64) -> Result<()> {
    if n != 0 {
        tx.prepare_cached("UPDATE atp_queue_counter SET value = value + ?2 WHERE name = ?1")
            .and_then(|mut s| s.execute(params![name, n]))
            .map_err(db("counting the queue"))?;
    }
    Ok(())
}

/// ACCEPTED tasks, from the two counters (no row scan).
pub(super) fn queue_size(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT (SELECT value FROM atp_queue_counter WHERE name = 'in')
                  - (SELECT value FROM atp_queue_counter WHERE name = 'out')",
        )
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db("reading the queue size"))?;
    Ok(n.max(0) as u64)
}

/// The id and status of a task, or `TaskNotFound`.
pub(super) fn locate(conn: &Connection, task: &TaskRef) -> Result<(i64, Status)> {
    let found: Option<(i64, i64)> = match task {
        TaskRef::Id(id) => conn
            .prepare_cached("SELECT id, status FROM atp_task WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            }),
        TaskRef::Key(t, i) => conn
            .prepare_cached(
                "SELECT t.id, t.status FROM atp_task t JOIN atp_task_type y ON y.id = t.type_id
                 WHERE y.name = ?1 AND t.identifier = ?2",
            )
            .and_then(|mut s| {
                s.query_row([t.as_str(), i.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            }),
    }
    .map_err(db("looking up a task"))?;
    let (id, status) = found.ok_or_else(|| Error::TaskNotFound(task.to_string()))?;
    Ok((id, row::status_of(status)?))
}

pub(super) fn get(conn: &Connection, task: &TaskRef) -> Result<Task> {
    let TaskRef::Key(t, i) = task else {
        let (id, _) = locate(conn, task)?;
        return get_by_id(conn, id);
    };
    // One statement: the status look-up is the hottest read.
    let sql = format!(
        "SELECT {} FROM {} WHERE y.name = ?1 AND t.identifier = ?2",
        row::TASK_COLUMNS,
        row::TASK_FROM
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row([t.as_str(), i.as_str()], row::task).optional())
        .map_err(db("reading a task"))?
        .ok_or_else(|| Error::TaskNotFound(task.to_string()))?
}

pub(super) fn get_by_id(conn: &Connection, id: i64) -> Result<Task> {
    let sql = format!(
        "SELECT {} FROM {} WHERE t.id = ?1",
        row::TASK_COLUMNS,
        row::TASK_FROM
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row([id], row::task).optional())
        .map_err(db("reading a task"))?
        .ok_or_else(|| Error::TaskNotFound(TaskRef::Id(TaskId(id)).to_string()))?
}

pub(super) fn input(conn: &Connection, task: &TaskRef) -> Result<serde_json::Value> {
    let (id, _) = locate(conn, task)?;
    let raw: String = conn
        .prepare_cached("SELECT input FROM atp_task WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)))
        .map_err(db("reading a task's input"))?;
    serde_json::from_str(&raw).map_err(|e| Error::Corrupt(format!("stored input is not JSON: {e}")))
}

pub(super) fn log(conn: &Connection, task: &TaskRef) -> Result<Vec<LogRecord>> {
    let (id, _) = locate(conn, task)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT time, status, message FROM atp_task_log WHERE task_id = ?1 ORDER BY id",
        )
        .map_err(db("reading a task's log"))?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(db("reading a task's log"))?;
    rows.map(|r| {
        let (time, status, message) = r.map_err(db("reading a task's log"))?;
        Ok(LogRecord {
            time: from_micros(time),
            status: row::status_of(status)?,
            message,
        })
    })
    .collect()
}

pub(super) fn response_get(conn: &Connection, task: &TaskRef) -> Result<Option<Response>> {
    let (id, _) = locate(conn, task)?;
    let stored: Option<(String, i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT mime_type, encoding, body FROM atp_task_response WHERE task_id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(db("reading a response"))?;
    stored
        .map(|(mime_type, encoding, body)| {
            Ok(Response {
                body: payload::decode(payload::Encoding::from_code(encoding)?, body)?,
                mime_type,
            })
        })
        .transpose()
}

/// The counts by type and status, as the triggers of migration 0009 keep
/// them (never a count of the task table: the cost is the same with 10 or
/// 10,000,000 tasks).
pub(super) const COUNTS: &str = "
SELECT y.name, c.status, c.n FROM atp_task_count c JOIN atp_task_type y ON y.id = c.type_id
WHERE c.n <> 0 ORDER BY y.name, c.status";

/// Per (type, status): [`COUNTS`].
pub(super) fn counts(conn: &Connection) -> Result<TaskCounts> {
    let mut stmt = conn.prepare_cached(COUNTS).map_err(db("counting tasks"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(db("counting tasks"))?;
    let mut counts = TaskCounts::default();
    for r in rows {
        let (name, status, n) = r.map_err(db("counting tasks"))?;
        counts
            .by_type
            .push((row::type_name(name)?, row::status_of(status)?, n as u64));
    }
    counts.by_status = crate::shared::sum_by_status(&counts.by_type);
    Ok(counts)
}

pub(super) fn delete(tx: &Transaction<'_>, task: &TaskRef) -> Result<()> {
    let (id, status) = locate(tx, task)?;
    tx.prepare_cached("DELETE FROM atp_task WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(db("deleting a task"))?;
    if status == Status::Accepted {
        count_queue_exits(tx, 1)?;
    }
    Ok(())
}

pub(super) fn reenqueue(
    tx: &Transaction<'_>,
    task: &TaskRef,
    message: &str,
    now: i64,
) -> Result<Task> {
    let (id, status) = locate(tx, task)?;
    let decided = decide::reenqueue(TaskId(id), status, message)?;
    tx.prepare_cached(
        "UPDATE atp_task SET status = 1, holder = NULL, starts = 0, progress_percent = NULL,
             progress_message = NULL, updated_at = ?2, enqueued_at = ?2, due_at = ?2, delayed = 0
         WHERE id = ?1 AND status = ?3",
    )
    .and_then(|mut s| s.execute(params![id, now, status.code()]))
    .map_err(db("re-enqueueing a task"))?;
    write_log(tx, id, decided.to, &decided.message, now)?;
    count_queue_entries(tx, 1)?;
    get_by_id(tx, id)
}

/// Writes a decided move of task `id` with a compare-and-set on the status
/// it was decided on and the (holder, lease) it was seen with, logs it, and
/// counts a queue entry. `false` (and nothing written) when the row no
/// longer matches.
pub(super) fn write_move(
    tx: &Transaction<'_>,
    id: i64,
    decided: &decide::Move,
    seen: (Option<DaemonId>, u64),
    now: i64,
) -> Result<bool> {
    write_moves(tx, id, &[decided], seen, now)
}

/// [`write_move`] for moves decided one after the other on the same read
/// of task `id` (the first's source is what the row must still say): one
/// row update to where the last leaves it (starts counted by any, a
/// holder cleared by any), and a log record for each, in order.
pub(super) fn write_moves(
    tx: &Transaction<'_>,
    id: i64,
    moves: &[&decide::Move],
    (holder, lease): (Option<DaemonId>, u64),
    now: i64,
) -> Result<bool> {
    let (Some(first), Some(last)) = (moves.first(), moves.last()) else {
        return Ok(true);
    };
    let starts: i64 = moves.iter().map(|m| i64::from(m.counts_start)).sum();
    let clears = moves.iter().any(|m| m.clears_holder);
    let changed = tx
        .prepare_cached(
            "UPDATE atp_task SET status = ?3, updated_at = ?4, starts = starts + ?10,
                 holder = CASE WHEN ?8 THEN NULL ELSE holder END,
                 enqueued_at = CASE WHEN ?3 = 1 AND NOT ?9 THEN ?4 ELSE enqueued_at END,
                 due_at = CASE WHEN ?3 = 1 AND NOT ?9 THEN ?4 + ?7 ELSE due_at END,
                 delayed = CASE WHEN ?3 = 1 AND NOT ?9 THEN ?7 > 0 ELSE delayed END
             WHERE id = ?1 AND status = ?2 AND holder IS ?5 AND lease = ?6",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                first.from.code(),
                last.to.code(),
                now,
                holder.map(DaemonId::to_db),
                lease as i64,
                crate::shared::delay_micros(last),
                clears,
                last.keeps_place,
                starts
            ])
        })
        .map_err(db("changing a task's status"))?;
    if changed != 1 {
        return Ok(false);
    }
    let mut entries = 0;
    for m in moves {
        write_log(tx, id, m.to, &m.message, now)?;
        entries += i64::from(m.enters_queue());
    }
    if entries > 0 {
        count_queue_entries(tx, entries)?;
    }
    Ok(true)
}

/// Appends one log record.
pub(super) fn write_log(
    tx: &Transaction<'_>,
    task: i64,
    status: Status,
    message: &str,
    now: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO atp_task_log (task_id, time, status, message) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![task, now, status.code(), message]))
    .map_err(db("writing the task log"))?;
    Ok(())
}
