//! Clean-ups (abandoned and retired tasks) and daemon records.
//!
//! Each runs in one write transaction, so several daemons running the same
//! clean-up at once simply take turns; the second finds nothing left to do.

use atp_core::decide::{self, Release};
use atp_core::time::{from_micros, secs_to_micros};
use atp_core::{
    DaemonId, DaemonInfo, DeadRule, Error, ReapedDaemon, Rescued, Result, Retired, Status, TaskId,
};
use rusqlite::{Connection, Transaction, params};

use super::task::write_move;
use super::{db, row};
use crate::shared::{Candidate, ReapReport};

/// The held tasks that match `condition` (over `t` the task and `y` its
/// type), in id order.
fn candidates(
    tx: &Transaction<'_>,
    condition: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Candidate>> {
    let sql = format!(
        "SELECT {} FROM {} WHERE t.status IN (2, 3, 4) AND {condition} ORDER BY t.id",
        crate::row::CANDIDATE_COLUMNS,
        row::TASK_FROM
    );
    let mut stmt = tx
        .prepare_cached(&sql)
        .map_err(db("finding tasks to rescue"))?;
    let rows = stmt
        .query_map(args, |r| Ok(crate::row::candidate(r)))
        .map_err(db("finding tasks to rescue"))?;
    rows.map(|r| r.map_err(db("finding tasks to rescue"))?)
        .collect()
}

/// Moves one held task where [`decide::release`] says (back to the queue,
/// or FAILED when its starts are used up), with a compare-and-set on the
/// state it was seen in.
fn rescue(
    tx: &Transaction<'_>,
    c: Candidate,
    why: Release<'_>,
    now: i64,
) -> Result<Option<Rescued>> {
    let decided = decide::release(&c.state, why)?;
    if !write_move(tx, c.id, &decided, (c.state.holder, c.state.lease), now)? {
        return Ok(None);
    }
    c.rescued(&decided).map(Some)
}

pub(super) fn requeue_abandoned(tx: &Transaction<'_>, now: i64) -> Result<Vec<Rescued>> {
    // Scans only held tasks (the status index), never finished ones.
    let found = candidates(
        tx,
        "t.updated_at < ?1 - CAST(y.timeout_secs * 1000000 AS INTEGER)",
        [now],
    )?;
    let mut rescued = Vec::new();
    for c in found {
        let why = Release::Abandoned {
            timeout_secs: c.timeout_secs,
        };
        rescued.extend(rescue(tx, c, why, now)?);
    }
    Ok(rescued)
}

pub(super) fn delete_retired(tx: &Transaction<'_>, limit: u32, now: i64) -> Result<Vec<Retired>> {
    let kept: Vec<(i64, String, f64)> = tx
        .prepare_cached("SELECT id, name, retention_secs FROM atp_task_type WHERE retention_secs > 0 ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(db("finding types with a retention"))?;
    let mut retired = Vec::new();
    for (type_id, name, retention_secs) in kept {
        for status in Status::TERMINAL {
            let room = i64::from(limit) - retired.len() as i64;
            if room <= 0 {
                return Ok(retired);
            }
            let cutoff = now - secs_to_micros(retention_secs);
            retire_range(tx, type_id, &name, status, cutoff, room, &mut retired)?;
        }
    }
    Ok(retired)
}

/// Deletes up to `room` tasks of one type and final status older than
/// `cutoff`: one range scan of (type_id, status, updated_at), so the cost
/// follows what is deleted, never the table size.
fn retire_range(
    tx: &Transaction<'_>,
    type_id: i64,
    name: &str,
    status: Status,
    cutoff: i64,
    room: i64,
    retired: &mut Vec<Retired>,
) -> Result<()> {
    let rows: Vec<(i64, String)> = tx
        .prepare_cached(
            "DELETE FROM atp_task WHERE id IN (
                 SELECT id FROM atp_task INDEXED BY atp_task_type_status_updated
                 WHERE type_id = ?1 AND status = ?2 AND updated_at < ?3
                 ORDER BY updated_at LIMIT ?4)
             RETURNING id, identifier",
        )
        .and_then(|mut s| {
            s.query_map(params![type_id, status.code(), cutoff, room], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })
        .map_err(db("deleting retired tasks"))?;
    for (id, identifier) in rows {
        retired.push(Retired {
            id: TaskId(id),
            task_type: row::type_name(name.to_owned())?,
            identifier: row::identifier_of(identifier)?,
            status,
        });
    }
    Ok(())
}

pub(super) fn daemon_register(tx: &Transaction<'_>, d: &DaemonInfo, now: i64) -> Result<()> {
    let handlers =
        serde_json::to_string(&d.handlers).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    tx.prepare_cached(
        "INSERT INTO atp_daemon (id, host, pid, started_at, heartbeat_at, handlers)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
             started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
             handlers = excluded.handlers",
    )
    .and_then(|mut s| {
        s.execute(params![
            d.id.to_db(),
            d.host,
            i64::from(d.pid),
            atp_core::time::to_micros(d.started_at),
            now,
            handlers
        ])
    })
    .map_err(db("registering a daemon"))?;
    Ok(())
}

pub(super) fn daemon_heartbeat(tx: &Transaction<'_>, id: DaemonId, now: i64) -> Result<bool> {
    let changed = tx
        .prepare_cached("UPDATE atp_daemon SET heartbeat_at = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id.to_db(), now]))
        .map_err(db("heartbeating a daemon"))?;
    Ok(changed == 1)
}

pub(super) fn daemon_deregister(tx: &Transaction<'_>, id: DaemonId) -> Result<()> {
    tx.prepare_cached("DELETE FROM atp_daemon WHERE id = ?1")
        .and_then(|mut s| s.execute([id.to_db()]))
        .map_err(db("deregistering a daemon"))?;
    Ok(())
}

pub(super) fn daemon_list(conn: &Connection) -> Result<Vec<DaemonInfo>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, host, pid, started_at, heartbeat_at, handlers FROM atp_daemon ORDER BY started_at, id",
        )
        .map_err(db("listing daemons"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .map_err(db("listing daemons"))?;
    rows.map(|r| {
        let (id, host, pid, started, heartbeat, handlers) = r.map_err(db("listing daemons"))?;
        Ok(DaemonInfo {
            id: DaemonId::from_db(id),
            host,
            pid: pid as u32,
            started_at: from_micros(started),
            heartbeat_at: from_micros(heartbeat),
            handlers: serde_json::from_str(&handlers)
                .map_err(|e| Error::Corrupt(format!("daemon handlers are not a JSON list: {e}")))?,
        })
    })
    .collect()
}

/// Whether the process `pid` is gone from this host: `kill` with no signal
/// finds no such process. A process of another user (`EPERM`) is alive, and
/// a pid that is not a single process's (0, or too large) is never taken
/// for gone. A pid reused by a new process only makes a dead daemon look
/// alive: the long threshold still reaps it.
fn process_gone(pid: u32) -> bool {
    match i32::try_from(pid) {
        Ok(pid) if pid > 0 => matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        ),
        _ => false,
    }
}

/// This host's name, as daemons record it.
fn this_host() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
}

/// The daemon records a reap removes: silent for the long threshold, or
/// for the short one and running on this host with their process gone (a
/// file shared by processes of one host is SQLite's normal case; a
/// daemon of another host sharing the file is judged by the long threshold
/// alone). Ids as stored, each with whether the long rule took it.
fn dead_daemons(tx: &Transaction<'_>, rule: DeadRule, now: i64) -> Result<Vec<(i64, bool)>> {
    let silent = now - secs_to_micros(rule.silent_secs);
    let gone = now - secs_to_micros(rule.gone_secs);
    let quiet: Vec<(i64, String, u32, i64)> = tx
        .prepare_cached(
            "SELECT id, host, pid, heartbeat_at FROM atp_daemon WHERE heartbeat_at < ?1 ORDER BY id",
        )
        .and_then(|mut s| {
            s.query_map([gone], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect()
        })
        .map_err(db("finding silent daemons"))?;
    let host = this_host();
    let dead: Vec<(i64, bool)> = quiet
        .into_iter()
        .filter(|(id, ..)| rule.spare.map(|d| d.to_db()) != Some(*id))
        .filter_map(|(id, daemon_host, pid, heartbeat_at)| {
            let long = heartbeat_at < silent;
            let shown_gone = host.as_deref() == Some(daemon_host.as_str()) && process_gone(pid);
            (long || shown_gone).then_some((id, long))
        })
        .collect();
    let mut delete = tx
        .prepare_cached("DELETE FROM atp_daemon WHERE id = ?1")
        .map_err(db("removing dead daemons"))?;
    for (id, _) in &dead {
        delete.execute([id]).map_err(db("removing dead daemons"))?;
    }
    Ok(dead)
}

pub(super) fn daemon_reap_dead(
    tx: &Transaction<'_>,
    rule: DeadRule,
    now: i64,
) -> Result<Vec<ReapedDaemon>> {
    let dead = dead_daemons(tx, rule, now)?;
    let mut reaped = ReapReport::new(dead.iter().map(|(id, _)| *id));
    // The tasks of the daemons just shown gone, at once (their process is
    // over: nothing of theirs can still be running)...
    let mut found = Vec::new();
    for &(id, long) in &dead {
        if !long {
            for c in candidates(tx, "t.holder = ?1", [id])? {
                found.push((c, rule.gone_secs));
            }
        }
    }
    // ...and tasks whose holder has no record (removed by the long rule,
    // now or earlier, or never registered) once they have been quiet as
    // long as a dead daemon: a holder silent that long that still touched
    // a task lately may be alive, and hears of its removal at its next
    // heartbeat.
    let cutoff = now - secs_to_micros(rule.silent_secs);
    for c in candidates(
        tx,
        "t.holder NOT IN (SELECT id FROM atp_daemon) AND t.updated_at < ?1",
        [cutoff],
    )? {
        found.push((c, rule.silent_secs));
    }
    for (c, silent_secs) in found {
        let holder = c.state.holder.unwrap_or(DaemonId::from_db(0));
        let why = Release::HolderDead {
            holder,
            silent_secs,
        };
        if let Some(r) = rescue(tx, c, why, now)? {
            reaped.rescued(holder, r);
        }
    }
    Ok(reaped.into_vec())
}
