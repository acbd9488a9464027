//! Types with a limit of running tasks (`max_running`): which queued tasks
//! a claim may take without any limited type going over its limit.
//!
//! Exact because the whole claim runs under the writer lock: the held
//! tasks counted here are all there are until the claim commits. Only
//! claims on a database with limited types (not paused) take this path;
//! the others keep the one-statement claim of `queue.rs`.

use std::collections::HashMap;

use atp_core::Result;
use rusqlite::{Transaction, params};

use super::db;

/// The limited types (not paused) and how many more of their tasks may be
/// held now: the limit minus the held (SCHEDULED, RUNNING, PAUSED) tasks,
/// counted through an index of held tasks (bounded by what daemons hold).
pub(super) fn room(tx: &Transaction<'_>) -> Result<HashMap<i64, i64>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT y.id, y.max_running - (SELECT count(*) FROM atp_task h
                                           WHERE h.type_id = y.id AND h.status IN (2, 3, 4))
             FROM atp_task_type y WHERE y.max_running IS NOT NULL AND y.paused = 0",
        )
        .map_err(db("counting limited types' running tasks"))?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db("counting limited types' running tasks"))?
        .collect::<rusqlite::Result<_>>()
        .map_err(db("counting limited types' running tasks"))
}

/// Up to `limit` queued tasks in queue order (of the types in `types_json`
/// when given, never of paused types) such that no type of `room` gets
/// more than its room: the queue index is walked with full types left out,
/// and walked again when a type fills up within a batch (at most once per
/// limited type).
pub(super) fn pick(
    tx: &Transaction<'_>,
    types_json: Option<&str>,
    limit: u32,
    mut room: HashMap<i64, i64>,
) -> Result<Vec<i64>> {
    let mut full: Vec<i64> = room
        .iter()
        .filter(|(_, r)| **r <= 0)
        .map(|(t, _)| *t)
        .collect();
    let mut chosen: Vec<i64> = Vec::new();
    let mut stmt = tx
        .prepare_cached(
            "SELECT id, type_id FROM atp_task INDEXED BY atp_task_queue
             WHERE status = 1 AND delayed = 0
               AND type_id NOT IN (SELECT id FROM atp_task_type WHERE paused = 1)
               AND (?1 IS NULL OR type_id IN (SELECT id FROM atp_task_type
                                              WHERE name IN (SELECT value FROM json_each(?1))))
               AND type_id NOT IN (SELECT value FROM json_each(?2))
               AND id NOT IN (SELECT value FROM json_each(?3))
             ORDER BY priority DESC, due_at, enqueued_at, id LIMIT ?4",
        )
        .map_err(db("claiming tasks"))?;
    loop {
        let want = limit as usize - chosen.len();
        if want == 0 {
            break;
        }
        let full_json = serde_json::Value::from(full.clone()).to_string();
        let chosen_json = serde_json::Value::from(chosen.clone()).to_string();
        let rows: Vec<(i64, i64)> = stmt
            .query_map(
                params![types_json, full_json, chosen_json, want as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db("claiming tasks"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(db("claiming tasks"))?;
        let mut skipped = false;
        for (id, type_id) in rows {
            match room.get_mut(&type_id) {
                Some(left) if *left <= 0 => skipped = true,
                Some(left) => {
                    *left -= 1;
                    chosen.push(id);
                    if *left == 0 {
                        full.push(type_id);
                    }
                }
                None => chosen.push(id),
            }
        }
        // Nothing skipped: the batch was taken whole (so the claim is full)
        // or the queue has nothing more. A skip means a type filled up
        // within the batch: look again without it.
        if !skipped {
            break;
        }
    }
    Ok(chosen)
}
