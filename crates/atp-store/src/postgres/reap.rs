//! Clean-ups (abandoned and retired tasks) and daemon records.
//!
//! Several daemons run the same clean-up at once: each locks what it rescues
//! or deletes with `SKIP LOCKED`, and a row another one changed first no
//! longer matches once locked (READ COMMITTED re-checks the condition on the
//! newest row), so every task is rescued or deleted once, and counted once.

use atp_core::decide::{self, Release};
use atp_core::{
    DaemonId, DaemonInfo, DeadRule, Error, ReapedDaemon, Rescued, Result, Retired, Status, TaskId,
};

use super::row::{self, get};
use super::task::{Changes, write_changes};
use super::{Conn, Params};
use crate::shared::{Candidate, ReapReport};

/// Locks (for this transaction) the held tasks that match `condition` (over
/// `t` the task and `y` its type), skipping any another transaction holds:
/// that one is changing it, so it is not abandoned.
async fn candidates(c: Conn<'_>, condition: &str, params: &Params<'_>) -> Result<Vec<Candidate>> {
    let sql = format!(
        "SELECT {} FROM {} WHERE t.status IN (2, 3, 4) AND {condition}
         ORDER BY t.id
         FOR NO KEY UPDATE OF t SKIP LOCKED",
        crate::row::CANDIDATE_COLUMNS,
        row::TASK_FROM
    );
    c.query("finding tasks to rescue", &sql, params)
        .await?
        .iter()
        .map(crate::row::candidate)
        .collect()
}

/// Decides where one locked task goes ([`decide::release`]: back to the
/// queue, or FAILED when its starts are used up) and records the move.
fn rescue(changes: &mut Changes, c: Candidate, why: Release<'_>) -> Result<Rescued> {
    let decided = decide::release(&c.state, why)?;
    changes.push(c.id, &decided);
    c.rescued(&decided)
}

pub(super) async fn requeue_abandoned(c: Conn<'_>) -> Result<Vec<Rescued>> {
    // Scans only held tasks (the status index), never finished ones.
    let found = candidates(
        c,
        "t.updated_at < now() - y.timeout_secs * interval '1 second'",
        &[],
    )
    .await?;
    let mut changes = Changes::default();
    let mut rescued = Vec::with_capacity(found.len());
    for task in found {
        let why = Release::Abandoned {
            timeout_secs: task.timeout_secs,
        };
        rescued.push(rescue(&mut changes, task, why)?);
    }
    write_changes(c, &changes).await?;
    Ok(rescued)
}

pub(super) async fn delete_retired(c: Conn<'_>, limit: u32) -> Result<Vec<Retired>> {
    let kept = c
        .query(
            "finding types with a retention",
            "SELECT id, name, retention_secs FROM atp_task_type WHERE retention_secs > 0 ORDER BY id",
            &[],
        )
        .await?;
    let mut retired = Vec::new();
    for r in &kept {
        let (type_id, name, retention_secs): (i64, String, f64) =
            (get(r, 0)?, get(r, 1)?, get(r, 2)?);
        for status in Status::TERMINAL {
            let room = i64::from(limit) - retired.len() as i64;
            if room <= 0 {
                return Ok(retired);
            }
            let range = Range {
                type_id,
                name: &name,
                status,
                retention_secs,
                room,
            };
            retire_range(c, &range, &mut retired).await?;
        }
    }
    Ok(retired)
}

/// One type's tasks of one final status.
struct Range<'a> {
    type_id: i64,
    name: &'a str,
    status: Status,
    retention_secs: f64,
    room: i64,
}

/// Deletes up to `room` tasks of the range older than the retention: one
/// range scan of (type_id, status, updated_at), so the cost follows what is
/// deleted, never the table size. Oldest first.
async fn retire_range(c: Conn<'_>, range: &Range<'_>, retired: &mut Vec<Retired>) -> Result<()> {
    let rows = c
        .query(
            "deleting retired tasks",
            "WITH deleted AS (
                 DELETE FROM atp_task WHERE id IN (
                     SELECT id FROM atp_task
                     WHERE type_id = $1 AND status = $2
                       AND updated_at < now() - $3 * interval '1 second'
                     ORDER BY updated_at, id LIMIT $4
                     FOR UPDATE SKIP LOCKED)
                 RETURNING id, identifier, updated_at
             )
             SELECT id, identifier FROM deleted ORDER BY updated_at, id",
            &[
                &range.type_id,
                &row::code(range.status),
                &range.retention_secs,
                &range.room,
            ],
        )
        .await?;
    for r in &rows {
        retired.push(Retired {
            id: TaskId(get(r, 0)?),
            task_type: row::type_name(range.name.to_owned())?,
            identifier: row::identifier_of(get(r, 1)?)?,
            status: range.status,
        });
    }
    Ok(())
}

pub(super) async fn daemon_register(c: Conn<'_>, d: &DaemonInfo) -> Result<()> {
    let handlers =
        serde_json::to_string(&d.handlers).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    // Same bits as the u32, as SQLite keeps them.
    let pid = d.pid as i32;
    c.execute(
        "registering a daemon",
        "INSERT INTO atp_daemon (id, host, pid, started_at, heartbeat_at, handlers)
         VALUES ($1, $2, $3, $4, now(), $5)
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
             started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
             handlers = excluded.handlers, liveness = false",
        &[&d.id.to_db(), &d.host, &pid, &d.started_at, &handlers],
    )
    .await?;
    Ok(())
}

/// Marks a daemon as one whose process a reaper can show gone: its
/// liveness lock is held (`liveness.rs`).
pub(super) async fn daemon_mark_checkable(c: Conn<'_>, id: i64) -> Result<()> {
    c.execute(
        "marking a daemon's liveness lock held",
        "UPDATE atp_daemon SET liveness = true WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

pub(super) async fn daemon_heartbeat(c: Conn<'_>, id: DaemonId) -> Result<bool> {
    let changed = c
        .execute(
            "heartbeating a daemon",
            "UPDATE atp_daemon SET heartbeat_at = now() WHERE id = $1",
            &[&id.to_db()],
        )
        .await?;
    Ok(changed == 1)
}

pub(super) async fn daemon_deregister(c: Conn<'_>, id: DaemonId) -> Result<()> {
    c.execute(
        "deregistering a daemon",
        "DELETE FROM atp_daemon WHERE id = $1",
        &[&id.to_db()],
    )
    .await?;
    Ok(())
}

pub(super) async fn daemon_list(c: Conn<'_>) -> Result<Vec<DaemonInfo>> {
    let rows = c
        .query(
            "listing daemons",
            "SELECT id, host, pid, started_at, heartbeat_at, handlers FROM atp_daemon
             ORDER BY started_at, id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let handlers: String = get(r, 5)?;
            Ok(DaemonInfo {
                id: DaemonId::from_db(get(r, 0)?),
                host: get(r, 1)?,
                pid: get::<i32>(r, 2)? as u32,
                started_at: get(r, 3)?,
                heartbeat_at: get(r, 4)?,
                handlers: serde_json::from_str(&handlers).map_err(|e| {
                    Error::Corrupt(format!("daemon handlers are not a JSON list: {e}"))
                })?,
            })
        })
        .collect()
}

/// Which daemon records a reap removes: silent for the long threshold
/// ($1), or for the short one ($2) with their liveness lock free
/// (`liveness.rs`). The short rule trusts a free lock only for a daemon
/// that heartbeated since the server (re)started: a restart frees every
/// lock at once, and a live daemon takes its lock again only once its
/// listener has reconnected.
pub(super) fn dead_daemons_sql() -> String {
    format!(
        "DELETE FROM atp_daemon d
         WHERE d.id IS DISTINCT FROM $3::int8
           AND (d.heartbeat_at < now() - $1 * interval '1 second'
                OR (d.liveness
                    AND d.heartbeat_at < now() - $2 * interval '1 second'
                    AND d.heartbeat_at > pg_postmaster_start_time()
                    AND {}))
         RETURNING d.id, d.heartbeat_at < now() - $1 * interval '1 second'",
        super::liveness::LOCK_FREE
    )
}

pub(super) async fn daemon_reap_dead(c: Conn<'_>, rule: DeadRule) -> Result<Vec<ReapedDaemon>> {
    // Each dead record is deleted by exactly one of several reapers: the
    // others find it gone when they reach it.
    let mut dead: Vec<(i64, bool)> = c
        .query(
            "removing dead daemons",
            &dead_daemons_sql(),
            &[
                &rule.silent_secs,
                &rule.gone_secs,
                &rule.spare.map(|d| d.to_db()),
            ],
        )
        .await?
        .iter()
        .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
        .collect::<Result<_>>()?;
    dead.sort_unstable();
    let ids: Vec<i64> = dead.iter().map(|(id, _)| *id).collect();
    // The tasks of the daemons just shown gone, at once (their process is
    // over: nothing of theirs can still be running); and tasks whose
    // holder has no record (removed by the long rule, now or earlier, or
    // never registered) once they have been quiet as long as a dead
    // daemon: a holder silent that long that still touched a task lately
    // may be alive, and hears of its removal at its next heartbeat.
    let gone: Vec<i64> = dead
        .iter()
        .filter(|(_, silent)| !silent)
        .map(|(id, _)| *id)
        .collect();
    let found = candidates(
        c,
        "t.holder IS NOT NULL
         AND (t.holder = ANY($2)
              OR (NOT EXISTS (SELECT 1 FROM atp_daemon d WHERE d.id = t.holder)
                  AND t.updated_at < now() - $1 * interval '1 second'))",
        &[&rule.silent_secs, &gone],
    )
    .await?;
    let mut reaped = ReapReport::new(ids.iter().copied());
    let mut changes = Changes::default();
    for task in found {
        let holder = task.state.holder.unwrap_or(DaemonId::from_db(0));
        // Said as the rule that took the holder: the short threshold for
        // a daemon shown gone.
        let shown_gone = dead
            .iter()
            .any(|&(id, silent)| DaemonId::from_db(id) == holder && !silent);
        let why = Release::HolderDead {
            holder,
            silent_secs: if shown_gone {
                rule.gone_secs
            } else {
                rule.silent_secs
            },
        };
        reaped.rescued(holder, rescue(&mut changes, task, why)?);
    }
    write_changes(c, &changes).await?;
    Ok(reaped.into_vec())
}
