//! Listing tasks: newest update first, by keyset, optionally with each
//! task's last log message.

use atp_core::{Result, Task, TaskFilter, TaskMessagePage, TaskPage};
use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use super::{db, row, task_type};

/// Newest update first, by keyset. A holder filter goes through the partial
/// `atp_task_holder` index (held tasks only, a daemon's handful), never
/// through the finished tasks; an identifier prefix walks its range of
/// `atp_task_identifier` and sorts what it finds; the other filters walk
/// `atp_task_updated`, `atp_task_status_updated` or
/// `atp_task_type_status_updated`.
pub(super) fn list(conn: &Connection, filter: &TaskFilter) -> Result<TaskPage> {
    let (sql, args) = list_query(conn, filter, "")?;
    let limit = filter.effective_limit();
    let mut stmt = conn.prepare_cached(&sql).map_err(db("listing tasks"))?;
    let rows = stmt
        .query_map(params_from_iter(args), row::task)
        .map_err(db("listing tasks"))?;
    let tasks = rows
        .map(|r| r.map_err(db("listing tasks"))?)
        .collect::<Result<Vec<Task>>>()?;
    Ok(crate::shared::page(tasks, limit))
}

/// [`list`] with each task's newest log message, from a subquery of one
/// `atp_task_log_task` probe per row.
pub(super) fn list_with_last_message(
    conn: &Connection,
    filter: &TaskFilter,
) -> Result<TaskMessagePage> {
    let (sql, args) = list_query(conn, filter, crate::row::LAST_MESSAGE_COLUMN)?;
    let mut stmt = conn.prepare_cached(&sql).map_err(db("listing tasks"))?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok(crate::row::task_with_last_message(r))
        })
        .map_err(db("listing tasks"))?;
    let rows = rows
        .map(|r| r.map_err(db("listing tasks"))?)
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::shared::message_page(rows, filter.effective_limit()))
}

/// The statement [`list`] runs, with its arguments (one row more than the
/// page, to know whether there is a next one); `extra` is appended to the
/// selected columns.
fn list_query(conn: &Connection, filter: &TaskFilter, extra: &str) -> Result<(String, Vec<Value>)> {
    let prefix = crate::shared::prefix_range(filter.identifier_prefix.as_deref())?;
    let mut sql = match (filter.holder, &prefix) {
        // INDEXED BY, as the claim does: given a status too, the planner
        // would rather walk `atp_task_status_updated` in order than sort a
        // few rows, which for FINISHED means every finished task.
        (Some(_), _) => format!(
            "SELECT {}{extra} FROM atp_task t INDEXED BY atp_task_holder \
             JOIN atp_task_type y ON y.id = t.type_id WHERE t.status IN (2, 3, 4)",
            row::TASK_COLUMNS
        ),
        // The same reason: walking `atp_task_updated` in order and
        // filtering on the identifier reads every task when few match.
        (None, Some(_)) => format!(
            "SELECT {}{extra} FROM atp_task t INDEXED BY atp_task_identifier \
             JOIN atp_task_type y ON y.id = t.type_id WHERE 1 = 1",
            row::TASK_COLUMNS
        ),
        (None, None) => format!(
            "SELECT {}{extra} FROM {} WHERE 1 = 1",
            row::TASK_COLUMNS,
            row::TASK_FROM
        ),
    };
    let mut args: Vec<Value> = Vec::new();
    if let Some(holder) = filter.holder {
        sql.push_str(" AND t.holder = ?");
        args.push(Value::Integer(holder.to_db()));
    }
    if let Some((lower, upper)) = prefix {
        sql.push_str(" AND t.identifier >= ?");
        args.push(Value::Text(lower));
        if let Some(upper) = upper {
            sql.push_str(" AND t.identifier < ?");
            args.push(Value::Text(upper));
        }
    }
    if let Some(status) = filter.status {
        sql.push_str(" AND t.status = ?");
        args.push(Value::Integer(status.code().into()));
    }
    if let Some(name) = &filter.task_type {
        sql.push_str(" AND t.type_id = ?");
        args.push(Value::Integer(task_type::id_of(conn, name)?));
    }
    if let Some(after) = filter.after {
        sql.push_str(" AND (t.updated_at, t.id) < (?, ?)");
        args.push(Value::Integer(after.updated_at_micros));
        args.push(Value::Integer(after.id.0));
    }
    let limit = filter.effective_limit();
    sql.push_str(" ORDER BY t.updated_at DESC, t.id DESC LIMIT ?");
    args.push(Value::Integer(i64::from(limit) + 1));
    Ok((sql, args))
}

#[cfg(test)]
mod tests {
    use atp_core::{DaemonId, TaskFilter};
    use rusqlite::{Connection, params_from_iter};

    use super::super::migrate;

    /// The plan SQLite chooses for what `list` would run.
    fn plan(conn: &Connection, filter: &TaskFilter) -> String {
        plan_with(conn, filter, "")
    }

    /// The plan for `list_query` with `extra` columns.
    fn plan_with(conn: &Connection, filter: &TaskFilter, extra: &str) -> String {
        let (sql, args) = super::list_query(conn, filter, extra).unwrap();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    /// A holder filter reads the partial holder index (held tasks only),
    /// whatever else is filtered, never an index over finished tasks.
    #[test]
    fn holder_filter_reads_the_holder_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::migrate(&mut conn, migrate::LATEST_VERSION).unwrap();
        let holder = Some(DaemonId(7));
        for status in [
            None,
            Some(atp_core::Status::Running),
            Some(atp_core::Status::Finished),
        ] {
            let plan = plan(
                &conn,
                &TaskFilter {
                    holder,
                    status,
                    after: Some(atp_core::TaskCursor {
                        updated_at_micros: 1,
                        id: atp_core::TaskId(1),
                    }),
                    ..TaskFilter::default()
                },
            );
            assert!(
                plan.contains("USING INDEX atp_task_holder (holder=?)"),
                "{status:?}: {plan}"
            );
        }
        let plan = plan(&conn, &TaskFilter::default());
        assert!(plan.contains("atp_task_updated"), "{plan}");
    }

    /// A prefix search walks its range of `atp_task_identifier` (and sorts
    /// what it finds), with or without a status, never the update-order
    /// indexes over every task; each task's last message is one probe of
    /// `atp_task_log_task`.
    #[test]
    fn a_prefix_search_reads_an_index_range() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::migrate(&mut conn, migrate::LATEST_VERSION).unwrap();
        for status in [None, Some(atp_core::Status::Failed)] {
            let plan = plan_with(
                &conn,
                &TaskFilter {
                    identifier_prefix: Some("ab%".into()),
                    status,
                    ..TaskFilter::default()
                },
                crate::row::LAST_MESSAGE_COLUMN,
            );
            assert!(
                plan.contains("USING INDEX atp_task_identifier (identifier>? AND identifier<?)"),
                "{status:?}: {plan}"
            );
            // The last message: one probe of the log's index per task.
            assert!(
                plan.contains("USING COVERING INDEX atp_task_log_task (task_id=?)")
                    || plan.contains("USING INDEX atp_task_log_task (task_id=?)"),
                "{status:?}: {plan}"
            );
        }
    }
}
