//! The daemon's side: claim, start, and every change a holder makes, each
//! fenced by the holder's [`Attempt`].

use std::collections::HashMap;
use std::sync::LazyLock;

use atp_core::decide::{self, TaskState};
use atp_core::store::ClaimParams;
use atp_core::time::from_micros;
use atp_core::{
    Attempt, ClaimedTask, Error, Progress, Response, Result, StartedTask, Status, StatusChange,
    TaskId, TaskType, messages, payload,
};
use rusqlite::{OptionalExtension, Transaction, params};

use super::task::{count_queue_exits, write_log, write_moves};
use super::{db, row};
use crate::shared::keep_item;

// The claim and start statements below write these codes as literals.
const _: () = assert!(decide::CLAIM.0 == 1 && decide::CLAIM.1 == 2);
const _: () = assert!(decide::START.0 == 2 && decide::START.1 == 3);

/// The claim of [`claim`], unrestricted: `?1` holder, `?2` now, `?3` limit.
pub(super) const CLAIM: &str =
    "UPDATE atp_task SET status = 2, holder = ?1, lease = lease + 1, updated_at = ?2
     WHERE id IN (SELECT id FROM atp_task INDEXED BY atp_task_queue
                  WHERE status = 1 AND delayed = 0
                    AND type_id NOT IN (SELECT id FROM atp_task_type WHERE paused = 1)
                  ORDER BY priority DESC, due_at, enqueued_at, id LIMIT ?3)
     RETURNING id, type_id, identifier, lease, priority, due_at, enqueued_at";

/// [`CLAIM`] restricted to the types named in the JSON array `?4`.
pub(super) const CLAIM_OF_TYPES: &str =
    "UPDATE atp_task SET status = 2, holder = ?1, lease = lease + 1, updated_at = ?2
     WHERE id IN (SELECT id FROM atp_task INDEXED BY atp_task_queue
                  WHERE status = 1 AND delayed = 0
                    AND type_id IN (SELECT id FROM atp_task_type
                                    WHERE name IN (SELECT value FROM json_each(?4))
                                      AND paused = 0)
                  ORDER BY priority DESC, due_at, enqueued_at, id LIMIT ?3)
     RETURNING id, type_id, identifier, lease, priority, due_at, enqueued_at";

pub(super) fn claim(tx: &Transaction<'_>, p: &ClaimParams, now: i64) -> Result<Vec<ClaimedTask>> {
    let types_json = p.types.as_ref().map(|names| {
        serde_json::Value::from(names.iter().map(|n| n.as_str()).collect::<Vec<_>>()).to_string()
    });
    // Due tasks first leave the delayed index for the queue's (due.rs).
    super::due::promote(tx, now)?;
    // The inner SELECT walks the partial queue index in queue order:
    // priority (higher first), due time, enqueue time, id (forced: left
    // alone, the planner prefers the status index and sorts the whole
    // queue); the writer lock makes select-then-update atomic against other
    // claimers, and against a pause. Paused types are skipped here, in the
    // claim itself, whatever types the caller asked for: the subquery over
    // the (few) type rows is computed once, and the walk filters on it.
    let sql = if types_json.is_some() {
        CLAIM_OF_TYPES
    } else {
        CLAIM
    };
    // With limited types, the tasks are chosen first (limit.rs), then
    // claimed by id.
    let room = super::limit::room(tx)?;
    let chosen = if room.is_empty() {
        None
    } else {
        let ids = super::limit::pick(tx, types_json.as_deref(), p.limit, room)?;
        Some(serde_json::Value::from(ids).to_string())
    };
    let sql = if chosen.is_some() {
        "UPDATE atp_task SET status = 2, holder = ?1, lease = lease + 1, updated_at = ?2
         WHERE id IN (SELECT value FROM json_each(?3)) AND status = 1
         RETURNING id, type_id, identifier, lease, priority, due_at, enqueued_at"
    } else {
        sql
    };
    let mut stmt = tx.prepare_cached(sql).map_err(db("claiming tasks"))?;
    let holder = p.holder.to_db();
    let map = |r: &rusqlite::Row<'_>| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            (
                std::cmp::Reverse(r.get::<_, i64>(4)?),
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(0)?,
            ),
        ))
    };
    let rows = match (&chosen, &types_json) {
        (Some(ids), _) => stmt.query_map(params![holder, now, ids], map),
        (None, Some(json)) => stmt.query_map(params![holder, now, p.limit, json], map),
        (None, None) => stmt.query_map(params![holder, now, p.limit], map),
    }
    .map_err(db("claiming tasks"))?
    .collect::<rusqlite::Result<Vec<_>>>()
    .map_err(db("claiming tasks"))?;
    drop(stmt);

    let mut rows = rows;
    // RETURNING's order is not promised: log and hand out in queue order.
    rows.sort_by_key(|&(_, _, _, _, order)| order);
    let mut names = HashMap::new();
    let mut claimed = Vec::with_capacity(rows.len());
    for (id, type_id, identifier, lease, _) in rows {
        write_log(tx, id, Status::Scheduled, &p.message, now)?;
        let task_type = match names.get(&type_id) {
            Some(name) => Clone::clone(name),
            None => {
                let name: String = tx
                    .prepare_cached("SELECT name FROM atp_task_type WHERE id = ?1")
                    .and_then(|mut s| s.query_row([type_id], |r| r.get(0)))
                    .map_err(db("claiming tasks"))?;
                let name = row::type_name(name)?;
                names.insert(type_id, name.clone());
                name
            }
        };
        claimed.push(ClaimedTask {
            attempt: Attempt {
                task: TaskId(id),
                holder: p.holder,
                lease: lease as u64,
            },
            task_type,
            identifier: row::identifier_of(identifier)?,
        });
    }
    count_queue_exits(tx, claimed.len() as i64)?;
    Ok(claimed)
}

/// A claim and the starts of everything it claimed, in the caller's one
/// transaction: the writer lock that makes the claim atomic also keeps
/// anyone else from touching the claimed tasks before they start.
pub(super) fn claim_start(
    tx: &Transaction<'_>,
    p: &ClaimParams,
    now: i64,
) -> Result<Vec<StartedTask>> {
    let claimed = claim(tx, p, now)?;
    let run_now = p.start.map_or(usize::MAX, |n| n as usize);
    let mut types = HashMap::new();
    claimed
        .iter()
        .enumerate()
        .map(|(i, c)| {
            start_one(tx, &c.attempt, now, &mut types, i < run_now).map_err(|e| {
                Error::Corrupt(format!(
                    "a task claimed in this transaction did not start: {e}"
                ))
            })
        })
        .collect()
}

pub(super) fn start_many(
    tx: &Transaction<'_>,
    attempts: &[Attempt],
    now: i64,
) -> Result<Vec<Result<StartedTask>>> {
    let mut types: HashMap<i64, TaskType> = HashMap::new();
    let mut results = Vec::with_capacity(attempts.len());
    for attempt in attempts {
        let one = start_one(tx, attempt, now, &mut types, true);
        keep_item(one, &mut results)?;
    }
    Ok(results)
}

/// Starts a claimed task (SCHEDULED → RUNNING, start counted, logged); with
/// `run` false, only reads what its handler will need and clears its
/// progress (a new attempt begins), leaving it SCHEDULED for its holder to
/// start later ([`atp_core::ClaimParams::start`]).
fn start_one(
    tx: &Transaction<'_>,
    a: &Attempt,
    now: i64,
    types: &mut HashMap<i64, TaskType>,
    run: bool,
) -> Result<StartedTask> {
    let started: Option<(i64, String, i64, String, i64, i64)> = tx
        .prepare_cached(
            "UPDATE atp_task SET status = CASE WHEN ?5 THEN 3 ELSE status END,
                 starts = starts + ?5, updated_at = ?4,
                 progress_percent = NULL, progress_message = NULL
             WHERE id = ?1 AND holder = ?2 AND lease = ?3 AND status = 2
             RETURNING type_id, identifier, starts, input, enqueued_at, due_at",
        )
        .and_then(|mut s| {
            s.query_row(
                params![a.task.0, a.holder.to_db(), a.lease as i64, now, run],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()
        })
        .map_err(db("starting a task"))?;
    let Some((type_id, identifier, starts, input, enqueued, due)) = started else {
        // The fenced update missed: the decision says why (a start it would
        // allow cannot have missed, unless the task changed hands since).
        let found = state(tx, a.task)?;
        return Err(decide::start(found.as_ref(), a)
            .err()
            .unwrap_or_else(|| decide::stale(a)));
    };
    let task_type = match types.get(&type_id) {
        Some(t) => t.clone(),
        None => {
            let sql = format!(
                "SELECT {} FROM atp_task_type WHERE id = ?1",
                row::TYPE_COLUMNS
            );
            let t = tx
                .prepare_cached(&sql)
                .and_then(|mut s| s.query_row([type_id], |r| row::task_type(r, 0)))
                .map_err(db("starting a task"))??;
            types.insert(type_id, t.clone());
            t
        }
    };
    let start = if run {
        let start = starts as u32;
        write_log(
            tx,
            a.task.0,
            Status::Running,
            &messages::started(a.holder, start, task_type.max_starts),
            now,
        )?;
        start
    } else {
        starts as u32 + 1
    };
    let input = serde_json::from_str(&input)
        .map_err(|e| Error::Corrupt(format!("stored input of task {} is not JSON: {e}", a.task)))?;
    Ok(StartedTask {
        attempt: *a,
        status: if run {
            Status::Running
        } else {
            Status::Scheduled
        },
        start,
        task_type,
        identifier: row::identifier_of(identifier)?,
        input,
        enqueued_at: from_micros(enqueued),
        due_at: from_micros(due),
    })
}

/// The task's state as the decisions read it; `None` when it is gone.
fn state(tx: &Transaction<'_>, task: TaskId) -> Result<Option<TaskState>> {
    /// Built once: every status change of a holder runs it.
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {} FROM {} WHERE t.id = ?1",
            crate::row::STATE_COLUMNS,
            row::TASK_FROM
        )
    });
    let found = tx
        .prepare_cached(&SQL)
        .and_then(|mut s| {
            s.query_row([task.0], |r| Ok(crate::row::state(r)))
                .optional()
        })
        .map_err(db("checking a task's holder"))?;
    found.transpose().map(|state| state.map(|(_, state)| state))
}

/// Confirms that `a` is the task's current attempt (see [`decide::check_held`]).
fn check_held(tx: &Transaction<'_>, a: &Attempt) -> Result<()> {
    decide::check_held(state(tx, a.task)?.as_ref(), a).map(|_| ())
}

/// Confirms that `a` is the task's current, live attempt (see [`decide::check_live`]).
fn check_live(tx: &Transaction<'_>, a: &Attempt) -> Result<()> {
    decide::check_live(state(tx, a.task)?.as_ref(), a).map(|_| ())
}

/// Each task's changes of the batch are decided in order on one read of
/// its state and written as one row update with all their log records
/// (a start of a task claimed ahead and its end usually share a batch).
/// Changes of different tasks are independent, so grouping them keeps
/// every task's own order.
pub(super) fn set_status_many(
    tx: &Transaction<'_>,
    changes: &[StatusChange],
    now: i64,
) -> Result<Vec<Result<()>>> {
    let mut groups: Vec<(TaskId, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<TaskId, usize> = HashMap::new();
    for (k, change) in changes.iter().enumerate() {
        let task = change.attempt().task;
        let g = *group_of.entry(task).or_insert_with(|| {
            groups.push((task, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(k);
    }
    let mut results: Vec<Option<Result<()>>> = changes.iter().map(|_| None).collect();
    for (task, items) in groups {
        let mut decided = Vec::new();
        let mut refused = Vec::new();
        let read = state(tx, task)?;
        let mut now_state = read;
        for k in items {
            let mut one = Vec::with_capacity(1);
            let outcome = decide::change(now_state.as_ref(), &changes[k]).map(|d| {
                if let (Some(d), Some(st)) = (d, now_state.as_mut()) {
                    st.apply(&d);
                    decided.push((k, d));
                }
            });
            keep_item(outcome, &mut one)?;
            if let Some(Err(e)) = one.pop() {
                refused.push((k, e));
            }
        }
        let written = match (&read, decided.is_empty()) {
            (Some(read), false) => {
                let moves: Vec<&decide::Move> = decided.iter().map(|(_, d)| d).collect();
                write_moves(tx, task.0, &moves, (read.holder, read.lease), now)?
            }
            _ => true,
        };
        for (k, _) in &decided {
            results[*k] = Some(if written {
                Ok(())
            } else {
                Err(decide::stale(&changes[*k].attempt()))
            });
        }
        if written {
            // The last response of the task's changes is the one kept.
            for (k, _) in &decided {
                if let Some(response) = changes[*k].response() {
                    put_response(tx, task.0, response, now)?;
                }
            }
        }
        for (k, e) in refused {
            results[k] = Some(Err(e));
        }
    }
    // A change that left a task this attempt had already ended alone.
    Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
}

pub(super) fn heartbeat_many(
    tx: &Transaction<'_>,
    attempts: &[Attempt],
    now: i64,
) -> Result<Vec<Result<()>>> {
    let mut results = Vec::with_capacity(attempts.len());
    for a in attempts {
        let one = heartbeat_one(tx, a, now);
        keep_item(one, &mut results)?;
    }
    Ok(results)
}

fn heartbeat_one(tx: &Transaction<'_>, a: &Attempt, now: i64) -> Result<()> {
    let changed = tx
        .prepare_cached(
            "UPDATE atp_task SET updated_at = ?4
             WHERE id = ?1 AND holder = ?2 AND lease = ?3 AND status IN (2, 3, 4)",
        )
        .and_then(|mut s| s.execute(params![a.task.0, a.holder.to_db(), a.lease as i64, now]))
        .map_err(db("heartbeating a task"))?;
    if changed == 1 {
        Ok(())
    } else {
        check_live(tx, a)
    }
}

pub(super) fn progress(tx: &Transaction<'_>, a: Attempt, p: &Progress, now: i64) -> Result<()> {
    let changed = tx
        .prepare_cached(
            "UPDATE atp_task SET updated_at = ?4, progress_percent = ?5, progress_message = ?6
             WHERE id = ?1 AND holder = ?2 AND lease = ?3 AND status IN (2, 3, 4)",
        )
        .and_then(|mut s| {
            s.execute(params![
                a.task.0,
                a.holder.to_db(),
                a.lease as i64,
                now,
                p.percent,
                p.message
            ])
        })
        .map_err(db("recording progress"))?;
    if changed == 1 {
        Ok(())
    } else {
        check_live(tx, &a)
    }
}

pub(super) fn response_put(
    tx: &Transaction<'_>,
    a: Attempt,
    response: &Response,
    now: i64,
) -> Result<()> {
    check_held(tx, &a)?;
    put_response(tx, a.task.0, response, now)
}

fn put_response(tx: &Transaction<'_>, task: i64, response: &Response, now: i64) -> Result<()> {
    let (encoding, body) = payload::encode(&response.mime_type, &response.body);
    tx.prepare_cached(
        "INSERT INTO atp_task_response (task_id, mime_type, encoding, body, stored_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (task_id) DO UPDATE SET mime_type = excluded.mime_type,
             encoding = excluded.encoding, body = excluded.body, stored_at = excluded.stored_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            task,
            response.mime_type,
            encoding.code(),
            body,
            now
        ])
    })
    .map_err(db("storing a response"))?;
    Ok(())
}
