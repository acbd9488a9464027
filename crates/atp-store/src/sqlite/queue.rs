//! The daemon's side: claim, start, and every change a holder makes, each
//! fenced by the holder's [`Attempt`].

use std::collections::HashMap;

use atp_core::store::ClaimParams;
use atp_core::time::from_micros;
use atp_core::{
    Attempt, ClaimedTask, DaemonId, Error, Progress, Response, Result, StartedTask, Status,
    StatusChange, TaskId, TaskType, Transition, messages, payload, status,
};
use rusqlite::{OptionalExtension, Transaction, params};

use super::task::{count_queue_entries, count_queue_exits, write_log};
use super::{db, row};
use crate::shared::keep_item;

pub(super) fn claim(tx: &Transaction<'_>, p: &ClaimParams, now: i64) -> Result<Vec<ClaimedTask>> {
    let types_json = p.types.as_ref().map(|names| {
        serde_json::Value::from(names.iter().map(|n| n.as_str()).collect::<Vec<_>>()).to_string()
    });
    // The inner SELECT walks the partial queue index in FIFO order (forced:
    // left alone, the planner prefers the status index and sorts the whole
    // queue); the writer lock makes select-then-update atomic against other
    // claimers.
    let sql = if types_json.is_some() {
        "UPDATE atp_task SET status = 2, holder = ?1, lease = lease + 1, updated_at = ?2
         WHERE id IN (SELECT id FROM atp_task INDEXED BY atp_task_queue WHERE status = 1
                        AND type_id IN (SELECT id FROM atp_task_type
                                        WHERE name IN (SELECT value FROM json_each(?4)))
                      ORDER BY enqueued_at, id LIMIT ?3)
         RETURNING id, type_id, identifier, lease, enqueued_at"
    } else {
        "UPDATE atp_task SET status = 2, holder = ?1, lease = lease + 1, updated_at = ?2
         WHERE id IN (SELECT id FROM atp_task INDEXED BY atp_task_queue WHERE status = 1
                      ORDER BY enqueued_at, id LIMIT ?3)
         RETURNING id, type_id, identifier, lease, enqueued_at"
    };
    let mut stmt = tx.prepare_cached(sql).map_err(db("claiming tasks"))?;
    let holder = p.holder.to_db();
    let map = |r: &rusqlite::Row<'_>| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    };
    let rows = match &types_json {
        Some(json) => stmt.query_map(params![holder, now, p.limit, json], map),
        None => stmt.query_map(params![holder, now, p.limit], map),
    }
    .map_err(db("claiming tasks"))?
    .collect::<rusqlite::Result<Vec<_>>>()
    .map_err(db("claiming tasks"))?;
    drop(stmt);

    let mut rows = rows;
    rows.sort_by_key(|&(id, _, _, _, enqueued)| (enqueued, id));
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
    let attempts: Vec<Attempt> = claimed.iter().map(|c| c.attempt).collect();
    start_many(tx, &attempts, now)?
        .into_iter()
        .map(|started| {
            started.map_err(|e| {
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
        let one = start_one(tx, attempt, now, &mut types);
        keep_item(one, &mut results)?;
    }
    Ok(results)
}

fn start_one(
    tx: &Transaction<'_>,
    a: &Attempt,
    now: i64,
    types: &mut HashMap<i64, TaskType>,
) -> Result<StartedTask> {
    let started: Option<(i64, String, i64, String, i64)> = tx
        .prepare_cached(
            "UPDATE atp_task SET status = 3, starts = starts + 1, updated_at = ?4,
                 progress_percent = NULL, progress_message = NULL
             WHERE id = ?1 AND holder = ?2 AND lease = ?3 AND status = 2
             RETURNING type_id, identifier, starts, input, enqueued_at",
        )
        .and_then(|mut s| {
            s.query_row(
                params![a.task.0, a.holder.to_db(), a.lease as i64, now],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
        })
        .map_err(db("starting a task"))?;
    let Some((type_id, identifier, starts, input, enqueued)) = started else {
        let held = check_held(tx, a)?;
        return Err(invalid(a.task, Transition::Start, held.status));
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
    let start = starts as u32;
    write_log(
        tx,
        a.task.0,
        Status::Running,
        &messages::started(a.holder, start, task_type.max_starts),
        now,
    )?;
    let input = serde_json::from_str(&input)
        .map_err(|e| Error::Corrupt(format!("stored input of task {} is not JSON: {e}", a.task)))?;
    Ok(StartedTask {
        attempt: *a,
        start,
        task_type,
        identifier: row::identifier_of(identifier)?,
        input,
        enqueued_at: from_micros(enqueued),
    })
}

/// What a fenced check learned about a task.
struct Held {
    status: Status,
    starts: u32,
    max_starts: u32,
}

/// Confirms that `a` is the task's current attempt (held, or ended by this
/// very attempt). `TaskNotFound` if it is gone, `StaleAttempt` otherwise.
fn check_held(tx: &Transaction<'_>, a: &Attempt) -> Result<Held> {
    let found: Option<(i64, Option<i64>, i64, i64, i64)> = tx
        .prepare_cached(
            "SELECT t.status, t.holder, t.lease, t.starts, y.max_starts
             FROM atp_task t JOIN atp_task_type y ON y.id = t.type_id WHERE t.id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([a.task.0], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()
        })
        .map_err(db("checking a task's holder"))?;
    let (status, holder, lease, starts, max_starts) =
        found.ok_or_else(|| Error::TaskNotFound(atp_core::TaskRef::Id(a.task).to_string()))?;
    let status = row::status_of(status)?;
    let same_attempt = holder.map(DaemonId::from_db) == Some(a.holder) && lease as u64 == a.lease;
    if !same_attempt || !(status.is_held() || status.is_terminal()) {
        return Err(stale(a));
    }
    Ok(Held {
        status,
        starts: starts as u32,
        max_starts: max_starts as u32,
    })
}

fn stale(a: &Attempt) -> Error {
    Error::StaleAttempt {
        task: a.task,
        holder: a.holder,
        lease: a.lease,
    }
}

fn invalid(task: TaskId, transition: Transition, from: Status) -> Error {
    Error::InvalidTransition {
        task,
        source: atp_core::status::InvalidTransition { transition, from },
    }
}

/// Like [`check_held`], but an attempt that already ended counts as stale:
/// for heartbeats, progress and other changes that only a live attempt makes.
fn check_live(tx: &Transaction<'_>, a: &Attempt) -> Result<Held> {
    let held = check_held(tx, a)?;
    if held.status.is_held() {
        Ok(held)
    } else {
        Err(stale(a))
    }
}

pub(super) fn set_status_many(
    tx: &Transaction<'_>,
    changes: &[StatusChange],
    now: i64,
) -> Result<Vec<Result<()>>> {
    let mut results = Vec::with_capacity(changes.len());
    for change in changes {
        let one = set_status_one(tx, change, now);
        keep_item(one, &mut results)?;
    }
    Ok(results)
}

fn set_status_one(tx: &Transaction<'_>, c: &StatusChange, now: i64) -> Result<()> {
    let a = &c.attempt;
    let held = check_held(tx, a)?;
    if c.unless_terminal && held.status.is_terminal() {
        return Ok(());
    }
    let transition = match c.status {
        Status::Running => Transition::Resume,
        Status::Paused => Transition::Pause,
        Status::Finished => Transition::Finish,
        Status::Failed => Transition::Fail,
        // Handing a task back: only while holding it.
        Status::Accepted if held.status.is_held() => Transition::Reenqueue,
        Status::Accepted => return Err(invalid(a.task, Transition::Reenqueue, held.status)),
        other => {
            return Err(Error::InvalidArgument(format!(
                "a holder cannot set a task {other}"
            )));
        }
    };
    transition
        .check(held.status)
        .map_err(|source| Error::InvalidTransition {
            task: a.task,
            source,
        })?;
    let (target, message) = if transition == Transition::Reenqueue {
        match status::after_release(held.starts, held.max_starts) {
            Status::Failed => (
                Status::Failed,
                messages::released_failed(&c.message, held.max_starts),
            ),
            s => (s, c.message.clone()),
        }
    } else {
        (transition.target(), c.message.clone())
    };
    let changed = tx
        .prepare_cached(
            "UPDATE atp_task SET status = ?5, updated_at = ?6,
                 holder = CASE WHEN ?5 = 1 THEN NULL ELSE holder END,
                 enqueued_at = CASE WHEN ?5 = 1 THEN ?6 ELSE enqueued_at END
             WHERE id = ?1 AND holder = ?2 AND lease = ?3 AND status = ?4",
        )
        .and_then(|mut s| {
            s.execute(params![
                a.task.0,
                a.holder.to_db(),
                a.lease as i64,
                held.status.code(),
                target.code(),
                now
            ])
        })
        .map_err(db("changing a task's status"))?;
    if changed != 1 {
        return Err(stale(a));
    }
    write_log(tx, a.task.0, target, &message, now)?;
    if target == Status::Accepted {
        count_queue_entries(tx, 1)?;
    }
    if let Some(response) = &c.response {
        put_response(tx, a.task.0, response, now)?;
    }
    Ok(())
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
        check_live(tx, a).map(|_| ())
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
        check_live(tx, &a).map(|_| ())
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
