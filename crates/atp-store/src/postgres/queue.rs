//! The daemon's side: claim, start, and every change a holder makes, each
//! fenced by the holder's [`Attempt`].
//!
//! Batches (start, status changes) lock their task rows in id order, decide
//! every item in memory exactly as the SQLite engine decides it one row at
//! a time (a later item sees what an earlier one did), then write all rows,
//! log records and counters with one statement. Single changes (heartbeats,
//! progress, responses) are one fenced statement each and look at the row
//! again only when it did not match, to say why.

use std::collections::{HashMap, HashSet};

use atp_core::decide::{self, TaskState};
use atp_core::store::ClaimParams;
use atp_core::{
    Attempt, ClaimedTask, Error, Progress, Response, Result, StartedTask, Status, StatusChange,
    TaskId, payload,
};
use tokio_postgres::Row;

use super::row::{self, get, lease_param};
use super::task::{Changes, write_changes};
use super::{Conn, Params};
use crate::shared::keep_item;

// The claim and start statements below write these codes as literals.
const _: () = assert!(decide::CLAIM.0 == 1 && decide::CLAIM.1 == 2);
const _: () = assert!(decide::START.0 == 2 && decide::START.1 == 3);

/// The `picked` CTE of a claim: the first ACCEPTED tasks that may run now
/// (not `delayed`) in queue order — priority (higher first), due time,
/// enqueue time, id — locked, skipping rows another claimer holds, so
/// every claimer gets tasks of its own without waiting. `types` is the
/// parameter holding the type names, when the claim is restricted.
///
/// Unrestricted, it walks the partial queue index `atp_task_queue` in
/// queue order. Restricted, a plain `type_id IN (…)` filter lets the planner
/// prefer the `(type_id, status, …)` index and sort every queued task of
/// those types (hundreds of milliseconds with a million queued), so each
/// type's oldest candidates are taken from `atp_task_queue_type` (ordered,
/// `LIMIT`ed) and merged; the lock and the FIFO limit apply to the merge.
/// A few spare candidates per type leave room for rows other claimers hold.
///
/// Rows found by id re-check `t.status + 0 = 1`, not `t.status = 1`: the
/// latter matches the predicate of the partial queue indexes, and with
/// statistics that call the queue small the planner then finds each row by
/// walking the whole queue index instead of the primary key (a claim grew
/// with the queue's length).
///
/// Paused types are skipped here, in the claim itself, whatever types the
/// caller asked for (its list may be older than the pause). Unrestricted,
/// the walk filters on the hashed set of paused type ids (computed once
/// per claim from the few type rows; the queue index is still walked in
/// order), so a paused type's backlog at the head of the queue costs a
/// walk past it. Restricted, paused types get no lateral probe at all.
///
/// Types with a limit of running tasks (`max_running`) are left out of
/// these two picks: they are claimed only by the `limited` pick, which runs
/// in a transaction that first locks their type rows (`limit.rs`), so that
/// its count of their held tasks stays true until it commits. It takes
/// each type's candidates like the restricted pick, a limited type's at
/// most its room (the limit minus its held tasks, counted through the
/// index of held tasks: bounded by what daemons hold). The room filters
/// each type's numbered candidates rather than being their `LIMIT`: a
/// `LIMIT` the planner cannot estimate made it hash-join a scan of the
/// whole task table (`due_plans.rs` checks the plan).
fn picked_cte(types: Option<&str>, limited: bool) -> String {
    if limited {
        let only = types.map_or(String::new(), |names| format!("AND y.name = ANY({names})"));
        return format!(
            "candidates AS (
             SELECT c.id, c.priority, c.due_at, c.enqueued_at
             FROM atp_task_type y CROSS JOIN LATERAL (
                 SELECT q.id, q.priority, q.due_at, q.enqueued_at,
                     row_number() OVER (ORDER BY q.priority DESC, q.due_at, q.enqueued_at, q.id)
                         AS place
                 FROM atp_task q
                 WHERE q.status = 1 AND NOT q.delayed AND q.type_id = y.id
                 ORDER BY q.priority DESC, q.due_at, q.enqueued_at, q.id LIMIT $3::int8 + 64
             ) c
             WHERE NOT y.paused {only}
               AND (y.max_running IS NULL
                    OR c.place <= y.max_running - (
                        SELECT count(*) FROM atp_task h
                        WHERE h.type_id = y.id AND h.status IN (2, 3, 4)))
         ), picked AS (
             SELECT t.id, c.priority, c.due_at, c.enqueued_at
             FROM atp_task t JOIN candidates c ON c.id = t.id
             WHERE t.status + 0 = 1 AND NOT t.delayed
             ORDER BY c.priority DESC, c.due_at, c.enqueued_at, c.id LIMIT $3
             FOR NO KEY UPDATE OF t SKIP LOCKED
         )"
        );
    }
    match types {
        None => "picked AS (
             SELECT id, priority, due_at, enqueued_at FROM atp_task
             WHERE status = 1 AND NOT delayed
               AND type_id NOT IN (SELECT p.id FROM atp_task_type p
                                   WHERE p.paused OR p.max_running IS NOT NULL)
             ORDER BY priority DESC, due_at, enqueued_at, id LIMIT $3
             FOR NO KEY UPDATE OF atp_task SKIP LOCKED
         )"
        .to_owned(),
        Some(names) => format!(
            "candidates AS (
             SELECT c.id, c.priority, c.due_at, c.enqueued_at
             FROM atp_task_type y CROSS JOIN LATERAL (
                 SELECT q.id, q.priority, q.due_at, q.enqueued_at FROM atp_task q
                 WHERE q.status = 1 AND NOT q.delayed AND q.type_id = y.id
                 ORDER BY q.priority DESC, q.due_at, q.enqueued_at, q.id LIMIT $3::int8 + 64
             ) c
             WHERE y.name = ANY({names}) AND NOT y.paused AND y.max_running IS NULL
         ), picked AS (
             SELECT t.id, c.priority, c.due_at, c.enqueued_at
             FROM atp_task t JOIN candidates c ON c.id = t.id
             WHERE t.status + 0 = 1 AND NOT t.delayed
             ORDER BY c.priority DESC, c.due_at, c.enqueued_at, c.id LIMIT $3
             FOR NO KEY UPDATE OF t SKIP LOCKED
         )"
        ),
    }
}

pub(super) fn claim_sql(by_type: bool, limited: bool) -> String {
    let picked = picked_cte(by_type.then_some("$4"), limited);
    format!(
        "WITH {picked}, claimed AS (
             UPDATE atp_task t SET status = 2, holder = $1, lease = t.lease + 1, updated_at = now()
             FROM picked WHERE t.id = picked.id AND t.status + 0 = 1 AND NOT t.delayed
             RETURNING t.id, t.type_id, t.identifier, t.lease, t.priority, t.due_at, t.enqueued_at
         ), logged AS (
             INSERT INTO atp_task_log (task_id, time, status, message)
             SELECT id, now(), 2, $2 FROM claimed ORDER BY priority DESC, due_at, enqueued_at, id
         ), counted AS (
             UPDATE atp_queue_counter SET value = value + (SELECT count(*) FROM claimed)
             WHERE name = 'out' AND shard = pg_backend_pid() % 16 AND EXISTS (SELECT 1 FROM claimed)
         )
         SELECT c.id, y.name, c.identifier, c.lease
         FROM claimed c JOIN atp_task_type y ON y.id = c.type_id
         ORDER BY c.priority DESC, c.due_at, c.enqueued_at, c.id"
    )
}

/// A claim (see [`picked_cte`]); with `limited`, inside the caller's
/// transaction, after locking the limited types' rows. Also returns
/// whether the database has limited types (see `limit.rs`).
pub(super) async fn claim(
    c: Conn<'_>,
    p: &ClaimParams,
    limited: bool,
) -> Result<(Vec<ClaimedTask>, bool)> {
    let holder = p.holder.to_db();
    let limit = i64::from(p.limit);
    let names: Option<Vec<&str>> = p
        .types
        .as_ref()
        .map(|names| names.iter().map(|n| n.as_str()).collect());
    let sql = claim_sql(names.is_some(), limited);
    let (rows, has_limits) = match &names {
        Some(names) => {
            let params: &Params<'_> = &[&holder, &p.message, &limit, names];
            let claim =
                super::limit::locked_then(c, limited, p, c.query("claiming tasks", &sql, params));
            super::due::promoted_then(c, claim).await?
        }
        None => {
            let params: &Params<'_> = &[&holder, &p.message, &limit];
            let claim =
                super::limit::locked_then(c, limited, p, c.query("claiming tasks", &sql, params));
            super::due::promoted_then(c, claim).await?
        }
    };
    let claimed = rows
        .iter()
        .map(|r| {
            Ok(ClaimedTask {
                attempt: Attempt {
                    task: TaskId(get(r, 0)?),
                    holder: p.holder,
                    lease: row::lease_of(get(r, 3)?)?,
                },
                task_type: row::type_name(get(r, 1)?)?,
                identifier: row::identifier_of(get(r, 2)?)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok((claimed, has_limits))
}

/// [`claim_sql`] and [`WRITE_STARTS`] in one statement: the same pick
/// (partial queue index, FIFO, `SKIP LOCKED`), one update of each task
/// (lease counted), the log records, the `out` counter, and what the
/// handler needs. The first `$5` tasks in queue order go straight to
/// RUNNING (start counted) with their SCHEDULED and RUNNING records in that
/// order; the rest stay SCHEDULED for the holder to start later
/// ([`atp_core::ClaimParams::start`]). The RUNNING message is built here as
/// [`messages::started`] builds it, from the holder's display form ($4).
/// Every claimed task's progress is cleared: a new attempt begins.
pub(super) fn claim_start_sql(by_type: bool, limited: bool) -> String {
    let picked = picked_cte(by_type.then_some("$6"), limited);
    format!(
        "WITH {picked}, ranked AS (
             SELECT id, row_number() OVER (ORDER BY priority DESC, due_at, enqueued_at, id)
                 <= $5::int8 AS run
             FROM picked
         ), started AS (
             UPDATE atp_task t SET status = CASE WHEN r.run THEN 3 ELSE 2 END, holder = $1,
                 lease = t.lease + 1, starts = t.starts + r.run::int, updated_at = now(),
                 progress_percent = NULL, progress_message = NULL
             FROM ranked r WHERE t.id = r.id AND t.status + 0 = 1 AND NOT t.delayed
             RETURNING t.id, t.type_id, t.identifier, t.lease, t.starts, t.input, t.enqueued_at,
                 t.priority AS queue_priority, t.due_at, r.run
         ), typed AS (
             SELECT s.id, s.identifier, s.lease, s.starts, s.input, s.enqueued_at,
                 s.queue_priority, s.due_at, s.run, {type_columns}
             FROM started s JOIN atp_task_type y ON y.id = s.type_id
         ), logged AS (
             INSERT INTO atp_task_log (task_id, time, status, message)
             SELECT d.id, now(), l.status,
                 CASE l.status WHEN 2 THEN $2::text
                     ELSE 'Started by ' || $4::text || ' (start ' || d.starts::text
                          || ' of ' || d.max_starts::text || ')' END
             FROM typed d CROSS JOIN (VALUES (2::int2), (3::int2)) AS l (status)
             WHERE l.status = 2 OR d.run
             ORDER BY d.queue_priority DESC, d.due_at, d.enqueued_at, d.id, l.status
         ), counted AS (
             UPDATE atp_queue_counter SET value = value + (SELECT count(*) FROM started)
             WHERE name = 'out' AND shard = pg_backend_pid() % 16
                 AND EXISTS (SELECT 1 FROM started)
         )
         SELECT d.id, d.identifier, d.lease, d.starts, d.input, d.enqueued_at, d.due_at, d.run,
             {type_columns_of_d}
         FROM typed d ORDER BY d.queue_priority DESC, d.due_at, d.enqueued_at, d.id",
        type_columns = row::TYPE_COLUMNS,
        type_columns_of_d = row::TYPE_COLUMNS.replace("y.", "d."),
    )
}

/// A claim-and-start (see [`claim`] for `limited` and the flag returned).
pub(super) async fn claim_start(
    c: Conn<'_>,
    p: &ClaimParams,
    limited: bool,
) -> Result<(Vec<StartedTask>, bool)> {
    const CONTEXT: &str = "claiming and starting tasks";
    let holder = p.holder.to_db();
    let shown = p.holder.to_string();
    let limit = i64::from(p.limit);
    let names: Option<Vec<&str>> = p
        .types
        .as_ref()
        .map(|names| names.iter().map(|n| n.as_str()).collect());
    let run = p.start.map_or(limit, i64::from);
    let sql = claim_start_sql(names.is_some(), limited);
    let (rows, has_limits) = match &names {
        Some(names) => {
            let params: &Params<'_> = &[&holder, &p.message, &limit, &shown, &run, names];
            let claim = super::limit::locked_then(c, limited, p, c.query(CONTEXT, &sql, params));
            super::due::promoted_then(c, claim).await?
        }
        None => {
            let params: &Params<'_> = &[&holder, &p.message, &limit, &shown, &run];
            let claim = super::limit::locked_then(c, limited, p, c.query(CONTEXT, &sql, params));
            super::due::promoted_then(c, claim).await?
        }
    };
    let started = rows
        .iter()
        .map(|r| {
            let task = TaskId(get(r, 0)?);
            let input: String = get(r, 4)?;
            let input = serde_json::from_str(&input).map_err(|e| {
                Error::Corrupt(format!("stored input of task {task} is not JSON: {e}"))
            })?;
            let run: bool = get(r, 7)?;
            let starts = row::count(get(r, 3)?)?;
            Ok(StartedTask {
                attempt: Attempt {
                    task,
                    holder: p.holder,
                    lease: row::lease_of(get(r, 2)?)?,
                },
                status: if run {
                    Status::Running
                } else {
                    Status::Scheduled
                },
                start: if run { starts } else { starts + 1 },
                task_type: row::task_type(r, 8)?,
                identifier: row::identifier_of(get(r, 1)?)?,
                input,
                enqueued_at: get(r, 5)?,
                due_at: get(r, 6)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok((started, has_limits))
}

/// The state of the tasks `ids` (with `extra` columns after
/// [`crate::row::STATE_COLUMNS`]); with `lock`, locked for this transaction in id order,
/// so that two batches over the same tasks cannot deadlock.
async fn states(c: Conn<'_>, ids: &[i64], extra: &str, lock: bool) -> Result<Vec<Row>> {
    let lock = if lock {
        "ORDER BY t.id FOR NO KEY UPDATE OF t"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {}{extra} FROM {} WHERE t.id = ANY($1) {lock}",
        crate::row::STATE_COLUMNS,
        row::TASK_FROM
    );
    c.query("checking a task's holder", &sql, &[&ids]).await
}

/// The distinct task ids of a batch.
fn task_ids(attempts: impl Iterator<Item = Attempt>) -> Vec<i64> {
    let mut ids: Vec<i64> = attempts.map(|a| a.task.0).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The extra columns a start reads: identifier, input, enqueued_at, then the
/// type.
fn start_columns() -> String {
    format!(
        ", t.identifier, t.input, t.enqueued_at, t.due_at, {}",
        row::TYPE_COLUMNS
    )
}

/// Marks the started tasks RUNNING with one more start and logs each.
const WRITE_STARTS: &str = "
WITH started AS (
    UPDATE atp_task t SET status = 3, starts = t.starts + 1, updated_at = now(),
        progress_percent = NULL, progress_message = NULL
    FROM unnest($1::int8[]) AS s (id)
    WHERE t.id = s.id AND t.status = 2
    RETURNING t.id
), logged AS (
    INSERT INTO atp_task_log (task_id, time, status, message)
    SELECT id, now(), 3, message
    FROM unnest($1::int8[], $2::text[]) WITH ORDINALITY AS l (id, message, ord)
    ORDER BY ord
)
SELECT count(*) FROM started";

pub(super) async fn start_many(
    c: Conn<'_>,
    attempts: &[Attempt],
) -> Result<Vec<Result<StartedTask>>> {
    let rows = states(
        c,
        &task_ids(attempts.iter().copied()),
        &start_columns(),
        true,
    )
    .await?;
    let mut locked: HashMap<i64, (TaskState, &Row)> = HashMap::with_capacity(rows.len());
    for r in &rows {
        let (id, held) = crate::row::state(r)?;
        locked.insert(id, (held, r));
    }
    let mut started_ids = Vec::new();
    let mut log_messages = Vec::new();
    let mut results = Vec::with_capacity(attempts.len());
    for a in attempts {
        let one = start_one(&mut locked, a).map(|(started, message)| {
            started_ids.push(a.task.0);
            log_messages.push(message);
            started
        });
        keep_item(one, &mut results)?;
    }
    if !started_ids.is_empty() {
        let r = c
            .query_one(
                "starting tasks",
                WRITE_STARTS,
                &[&started_ids, &log_messages],
            )
            .await?;
        let n: i64 = get(&r, 0)?;
        if n as usize != started_ids.len() {
            return Err(Error::Corrupt(format!(
                "{n} of {} locked tasks were started",
                started_ids.len()
            )));
        }
    }
    Ok(results)
}

/// Decides one start on the locked rows; returns the task and its log line.
fn start_one(
    locked: &mut HashMap<i64, (TaskState, &Row)>,
    a: &Attempt,
) -> Result<(StartedTask, String)> {
    let found = locked.get_mut(&a.task.0);
    let decided = decide::start(found.as_ref().map(|(state, _)| state), a)?;
    let (state, r) = found.ok_or_else(|| Error::Corrupt("a locked row went missing".into()))?;
    state.apply(&decided);
    let task_type = row::task_type(r, crate::row::STATE_COLUMNS_LEN + 4)?;
    let input: String = get(r, crate::row::STATE_COLUMNS_LEN + 1)?;
    let input = serde_json::from_str(&input)
        .map_err(|e| Error::Corrupt(format!("stored input of task {} is not JSON: {e}", a.task)))?;
    Ok((
        StartedTask {
            attempt: *a,
            status: Status::Running,
            start: state.starts,
            task_type,
            identifier: row::identifier_of(get(r, crate::row::STATE_COLUMNS_LEN)?)?,
            input,
            enqueued_at: get(r, crate::row::STATE_COLUMNS_LEN + 2)?,
            due_at: get(r, crate::row::STATE_COLUMNS_LEN + 3)?,
        },
        decided.message,
    ))
}

pub(super) async fn set_status_many(
    c: Conn<'_>,
    changes: &[StatusChange],
) -> Result<Vec<Result<()>>> {
    let ids = task_ids(changes.iter().map(|ch| ch.attempt()));
    let rows = states(c, &ids, "", true).await?;
    let mut locked: HashMap<i64, TaskState> =
        rows.iter().map(crate::row::state).collect::<Result<_>>()?;
    let mut writes = Changes::default();
    let mut responses: Vec<(i64, &Response)> = Vec::new();
    let mut results = Vec::with_capacity(changes.len());
    for change in changes {
        let task = change.attempt().task.0;
        let state = locked.get_mut(&task);
        let one = decide::change(state.as_deref(), change).map(|decided| {
            if let (Some(decided), Some(state)) = (decided, state) {
                state.apply(&decided);
                writes.push(task, &decided);
                if let Some(response) = change.response() {
                    responses.push((task, response));
                }
            }
        });
        keep_item(one, &mut results)?;
    }
    tokio::try_join!(write_changes(c, &writes), put_responses(c, &responses))?;
    Ok(results)
}

/// Stores responses, the last one per task when a batch has several.
async fn put_responses(c: Conn<'_>, responses: &[(i64, &Response)]) -> Result<()> {
    if responses.is_empty() {
        return Ok(());
    }
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    let mut mime_types = Vec::new();
    let mut encodings = Vec::new();
    let mut bodies = Vec::new();
    for (task, response) in responses.iter().rev() {
        if seen.insert(*task) {
            let (encoding, body) = payload::encode(&response.mime_type, &response.body);
            ids.push(*task);
            mime_types.push(response.mime_type.as_str());
            encodings.push(encoding.code());
            bodies.push(body);
        }
    }
    c.execute(
        "storing a response",
        "INSERT INTO atp_task_response (task_id, mime_type, encoding, body, stored_at)
         SELECT id, mime_type, encoding, body, now()
         FROM unnest($1::int8[], $2::text[], $3::int2[], $4::bytea[]) AS r (id, mime_type, encoding, body)
         ON CONFLICT (task_id) DO UPDATE SET mime_type = excluded.mime_type,
             encoding = excluded.encoding, body = excluded.body, stored_at = excluded.stored_at",
        &[&ids, &mime_types, &encodings, &bodies],
    )
    .await?;
    Ok(())
}

/// One statement for the whole batch; only the attempts it did not match
/// are looked at again, to say why.
pub(super) async fn heartbeat_many(c: Conn<'_>, attempts: &[Attempt]) -> Result<Vec<Result<()>>> {
    let mut sorted: Vec<&Attempt> = attempts.iter().collect();
    sorted.sort_unstable_by_key(|a| a.task.0);
    let ids: Vec<i64> = sorted.iter().map(|a| a.task.0).collect();
    let holders: Vec<i64> = sorted.iter().map(|a| a.holder.to_db()).collect();
    let leases: Vec<i64> = sorted.iter().map(|a| lease_param(a.lease)).collect();
    let rows = c
        .query(
            "heartbeating tasks",
            "UPDATE atp_task t SET updated_at = now()
             FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS a (id, holder, lease)
             WHERE t.id = a.id AND t.holder = a.holder AND t.lease = a.lease
               AND t.status IN (2, 3, 4)
             RETURNING a.id, a.holder, a.lease",
            &[&ids, &holders, &leases],
        )
        .await?;
    let mut beaten = HashSet::new();
    for r in &rows {
        let (id, holder, lease): (i64, i64, i64) = (get(r, 0)?, get(r, 1)?, get(r, 2)?);
        beaten.insert((id, holder, lease));
    }
    let key = |a: &Attempt| (a.task.0, a.holder.to_db(), lease_param(a.lease));
    let missed: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| !beaten.contains(&key(a)))
        .collect();
    let found = diagnose(c, missed.iter().copied()).await?;
    let mut results = Vec::with_capacity(attempts.len());
    for a in attempts {
        let one = if beaten.contains(&key(a)) {
            Ok(())
        } else {
            decide::check_live(found.get(&a.task.0), a).map(|_| ())
        };
        keep_item(one, &mut results)?;
    }
    Ok(results)
}

/// The current state of the tasks some attempts name (unlocked: these
/// attempts already failed their fenced statement, and a stale attempt never
/// becomes current again, since leases only grow).
async fn diagnose<'a>(
    c: Conn<'_>,
    attempts: impl Iterator<Item = &'a Attempt>,
) -> Result<HashMap<i64, TaskState>> {
    let ids = task_ids(attempts.copied());
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    states(c, &ids, "", false)
        .await?
        .iter()
        .map(crate::row::state)
        .collect()
}

pub(super) async fn progress(c: Conn<'_>, a: Attempt, p: &Progress) -> Result<()> {
    let params: &Params<'_> = &[
        &a.task.0,
        &a.holder.to_db(),
        &lease_param(a.lease),
        &p.percent,
        &p.message,
    ];
    let changed = c
        .execute(
            "recording progress",
            "UPDATE atp_task SET updated_at = now(), progress_percent = $4, progress_message = $5
             WHERE id = $1 AND holder = $2 AND lease = $3 AND status IN (2, 3, 4)",
            params,
        )
        .await?;
    if changed == 1 {
        return Ok(());
    }
    let found = diagnose(c, std::iter::once(&a)).await?;
    decide::check_live(found.get(&a.task.0), &a).map(|_| ())
}

/// One statement: the fenced row is locked while the response is written,
/// so a re-enqueue cannot slip in between the check and the write.
pub(super) async fn response_put(c: Conn<'_>, a: Attempt, response: &Response) -> Result<()> {
    let (encoding, body) = payload::encode(&response.mime_type, &response.body);
    let params: &Params<'_> = &[
        &a.task.0,
        &a.holder.to_db(),
        &lease_param(a.lease),
        &response.mime_type,
        &encoding.code(),
        &body,
    ];
    let stored = c
        .query(
            "storing a response",
            "WITH held AS (
                 SELECT id FROM atp_task
                 WHERE id = $1 AND holder = $2 AND lease = $3 AND status IN (2, 3, 4, 5, 6)
                 FOR NO KEY UPDATE
             )
             INSERT INTO atp_task_response (task_id, mime_type, encoding, body, stored_at)
             SELECT id, $4, $5, $6, now() FROM held
             ON CONFLICT (task_id) DO UPDATE SET mime_type = excluded.mime_type,
                 encoding = excluded.encoding, body = excluded.body, stored_at = excluded.stored_at
             RETURNING task_id",
            params,
        )
        .await?;
    if !stored.is_empty() {
        return Ok(());
    }
    let found = diagnose(c, std::iter::once(&a)).await?;
    decide::check_held(found.get(&a.task.0), &a)?;
    // Current now, yet the fenced statement did not match: it changed hands
    // and back in between, which leases rule out; report it as stale.
    Err(decide::stale(&a))
}

#[cfg(test)]
mod tests {
    use atp_core::{DaemonId, Handler, NewTask, Store, TaskIdentifier, TaskType, TypeName};

    use super::*;
    use crate::testing::{PgDb, TestDb};

    /// The log records of one claim-and-start come in id order: tasks in
    /// FIFO order, SCHEDULED before RUNNING for each; and the pick walks the
    /// partial queue index, like the claim's.
    #[tokio::test]
    async fn claim_start_logs_in_order_and_walks_the_queue_index() {
        let Some(db) = PgDb::new().await else {
            return;
        };
        let s = db.store();
        let t = TypeName::new("t").unwrap();
        s.task_type_upsert(&TaskType::new(
            t.clone(),
            Handler::new("builtin:noop").unwrap(),
        ))
        .await
        .unwrap();
        let tasks = (0..50)
            .map(|i| NewTask::new(t.clone(), TaskIdentifier::new(format!("x{i}")).unwrap()))
            .collect();
        s.task_enqueue_many(tasks).await.unwrap();
        let holder = DaemonId(0xDEAD_BEEF_0000_0001);
        let started = s
            .task_claim_start(&ClaimParams::new(holder, 20))
            .await
            .unwrap();
        assert_eq!(started.len(), 20);
        let mut expected = Vec::new();
        for task in &started {
            expected.push((task.attempt.task.0, 2i16));
            expected.push((task.attempt.task.0, 3i16));
        }
        let raw = db.raw().await;
        let logged: Vec<(i64, i16)> = raw
            .query(
                "SELECT task_id, status FROM atp_task_log WHERE status IN (2, 3) ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(logged, expected);

        // Among 20,000 finished tasks, the pick must not scan the table.
        raw.batch_execute(
            "INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at,
                 enqueued_at, due_at, starts, lease, holder, input)
             SELECT (SELECT id FROM atp_task_type WHERE name = 't'), 'old-' || i, 5,
                 now(), now(), now(), now(), 1, 1, 7, 'null'
             FROM generate_series(1, 20000) AS i;
             ANALYZE",
        )
        .await
        .unwrap();
        let plan: Vec<String> = raw
            .query(
                &format!("EXPLAIN (COSTS OFF) {}", claim_start_sql(false, false)),
                &[&holder.to_db(), &"m", &10i64, &"h", &10i64],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("atp_task_queue"), "{plan}");
    }

    /// A claim's generic plan, made while the queue is empty and never
    /// analysed (a new database), must still find each picked task by its
    /// key once thousands are queued: with sequential scans allowed it
    /// scanned the whole table once per candidate (see `PLANNER_SETTINGS`).
    #[tokio::test]
    async fn claims_planned_on_an_empty_queue_look_rows_up_by_key() {
        let Some(db) = PgDb::new().await else {
            return;
        };
        let s = db.store();
        let t = TypeName::new("t").unwrap();
        s.task_type_upsert(&TaskType::new(
            t.clone(),
            Handler::new("builtin:noop").unwrap(),
        ))
        .await
        .unwrap();
        let raw = db.raw().await;
        for (name, value) in super::super::PLANNER_SETTINGS {
            raw.batch_execute(&format!("SET {name} = {value}"))
                .await
                .unwrap();
        }
        raw.batch_execute(&format!(
            "SET plan_cache_mode = force_generic_plan;
             PREPARE typed_claim (int8, text, int8, text, int8, text[]) AS {};
             PREPARE any_claim (int8, text, int8, text, int8) AS {}",
            claim_start_sql(true, false),
            claim_start_sql(false, false)
        ))
        .await
        .unwrap();
        // Planned (and cached) on the empty queue.
        let holder = DaemonId(0xDEAD_BEEF_0000_0003).to_db();
        let typed = format!("EXECUTE typed_claim ({holder}, 'm', 8, 'h', 8, ARRAY['t'])");
        let any = format!("EXECUTE any_claim ({holder}, 'm', 8, 'h', 8)");
        for sql in [&typed, &any] {
            raw.batch_execute(sql).await.unwrap();
        }
        let tasks = (0..5_000)
            .map(|i| NewTask::new(t.clone(), TaskIdentifier::new(format!("x{i}")).unwrap()))
            .collect();
        s.task_enqueue_many(tasks).await.unwrap();
        for sql in [&typed, &any] {
            let plan = super::super::due_plans::plan(&raw, sql, &[]).await;
            let scans_tasks = plan
                .lines()
                .any(|l| l.contains("Seq Scan on atp_task") && !l.contains("on atp_task_"));
            assert!(!scans_tasks, "{sql}:\n{plan}");
            assert!(plan.contains("atp_task_queue"), "{sql}:\n{plan}");
        }
    }

    /// With a type paused (the claim filters it out itself), every claim
    /// still walks a queue index in order: the plain ones `atp_task_queue`,
    /// the restricted ones `atp_task_queue_type`; none scans the table.
    #[tokio::test]
    async fn claims_skipping_paused_types_still_walk_the_queue_indexes() {
        let Some(db) = PgDb::new().await else {
            return;
        };
        let s = db.store();
        let (a, b) = (TypeName::new("a").unwrap(), TypeName::new("b").unwrap());
        for t in [&a, &b] {
            s.task_type_upsert(&TaskType::new(
                t.clone(),
                Handler::new("builtin:noop").unwrap(),
            ))
            .await
            .unwrap();
            let tasks = (0..50)
                .map(|i| NewTask::new(t.clone(), TaskIdentifier::new(format!("x{i}")).unwrap()))
                .collect();
            s.task_enqueue_many(tasks).await.unwrap();
        }
        s.task_type_set_paused(&a, true).await.unwrap();
        let raw = db.raw().await;
        raw.batch_execute(
            "INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at,
                 enqueued_at, due_at, starts, lease, holder, input)
             SELECT (SELECT id FROM atp_task_type WHERE name = 'b'), 'old-' || i, 5,
                 now(), now(), now(), now(), 1, 1, 7, 'null'
             FROM generate_series(1, 20000) AS i;
             ANALYZE",
        )
        .await
        .unwrap();
        let holder = DaemonId(0xDEAD_BEEF_0000_0002).to_db();
        let names = vec!["a", "b"];
        let plans = [
            (
                "claim",
                raw.query(
                    &format!("EXPLAIN (COSTS OFF) {}", claim_sql(false, false)),
                    &[&holder, &"m", &10i64],
                )
                .await,
                "Index Scan using atp_task_queue on atp_task",
            ),
            (
                "claim and start",
                raw.query(
                    &format!("EXPLAIN (COSTS OFF) {}", claim_start_sql(false, false)),
                    &[&holder, &"m", &10i64, &"h", &10i64],
                )
                .await,
                "Index Scan using atp_task_queue on atp_task",
            ),
            (
                "restricted claim",
                raw.query(
                    &format!("EXPLAIN (COSTS OFF) {}", claim_sql(true, false)),
                    &[&holder, &"m", &10i64, &names],
                )
                .await,
                "atp_task_queue_type",
            ),
            (
                "restricted claim and start",
                raw.query(
                    &format!("EXPLAIN (COSTS OFF) {}", claim_start_sql(true, false)),
                    &[&holder, &"m", &10i64, &"h", &10i64, &names],
                )
                .await,
                "atp_task_queue_type",
            ),
        ];
        for (what, rows, index) in plans {
            let plan: Vec<String> = rows.unwrap().iter().map(|r| r.get(0)).collect();
            let plan = plan.join("\n");
            assert!(plan.contains(index), "{what} must walk {index}:\n{plan}");
            assert!(
                !plan.contains("Seq Scan on atp_task "),
                "{what} scans the table:\n{plan}"
            );
        }
        // And they skip the paused type.
        let claimed = s
            .task_claim(&ClaimParams::new(DaemonId(0xDEAD_BEEF_0000_0002), 100))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 50);
        assert!(claimed.iter().all(|c| c.task_type == b));
    }
}
