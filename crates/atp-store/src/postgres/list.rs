//! Listing tasks: newest update first, by keyset, optionally with each
//! task's last log message.

use atp_core::{Result, Task, TaskFilter, TaskMessagePage, TaskPage};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Conn, row, task_type};

/// Newest update first, by keyset: each filter combination walks one index
/// (`atp_task_updated`, `atp_task_status_updated`,
/// `atp_task_type_status_updated`) backwards from the cursor. A holder
/// filter repeats the partial index's predicate (`status IN (2, 3, 4)`) so
/// that the planner can read `atp_task_holder` (held tasks only) and sort a
/// daemon's handful; given a status too, it walks `atp_task_status_updated`
/// within the held statuses instead. Either way no finished task is read.
/// An identifier prefix is a range of `atp_task_identifier` (`COLLATE
/// "C"`, spelled out so that the index applies), sorted after the walk.
pub(super) async fn list(c: Conn<'_>, filter: &TaskFilter) -> Result<TaskPage> {
    let rows = list_rows(c, filter, "").await?;
    let tasks = rows.iter().map(row::task).collect::<Result<Vec<Task>>>()?;
    Ok(crate::shared::page(tasks, filter.effective_limit()))
}

/// [`list`] with each task's newest log message, from a subquery of one
/// `atp_task_log_task` probe per row.
pub(super) async fn list_with_last_message(
    c: Conn<'_>,
    filter: &TaskFilter,
) -> Result<TaskMessagePage> {
    let rows = list_rows(c, filter, crate::row::LAST_MESSAGE_COLUMN).await?;
    let rows = rows
        .iter()
        .map(crate::row::task_with_last_message)
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::shared::message_page(rows, filter.effective_limit()))
}

/// The rows of [`list`] (one more than the page, to know whether another
/// follows), `extra` appended to the selected columns.
async fn list_rows(c: Conn<'_>, filter: &TaskFilter, extra: &str) -> Result<Vec<Row>> {
    let type_id = match &filter.task_type {
        Some(name) => Some(task_type::id_of(c, name).await?),
        None => None,
    };
    let (sql, args) = list_query(filter, type_id, extra)?;
    let args: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as _).collect();
    c.query("listing tasks", &sql, &args).await
}

/// A boxed statement argument.
type Arg = Box<dyn ToSql + Sync + Send>;

/// The statement [`list_rows`] runs and its arguments, given the type's id.
fn list_query(
    filter: &TaskFilter,
    type_id: Option<i64>,
    extra: &str,
) -> Result<(String, Vec<Arg>)> {
    let mut sql = format!(
        "SELECT {}{extra} FROM {} WHERE true",
        row::TASK_COLUMNS,
        row::TASK_FROM
    );
    let mut args: Vec<Arg> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, value: Arg| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", args.len())));
    };
    if let Some(holder) = filter.holder {
        arg(
            &mut sql,
            " AND t.holder = ? AND t.status IN (2, 3, 4)",
            Box::new(holder.to_db()),
        );
    }
    if let Some((lower, upper)) = crate::shared::prefix_range(filter.identifier_prefix.as_deref())?
    {
        arg(
            &mut sql,
            " AND t.identifier COLLATE \"C\" >= ?",
            Box::new(lower),
        );
        if let Some(upper) = upper {
            arg(
                &mut sql,
                " AND t.identifier COLLATE \"C\" < ?",
                Box::new(upper),
            );
        }
    }
    if let Some(status) = filter.status {
        arg(&mut sql, " AND t.status = ?", Box::new(row::code(status)));
    }
    if let Some(type_id) = type_id {
        arg(&mut sql, " AND t.type_id = ?", Box::new(type_id));
    }
    if let Some(after) = filter.after {
        let at = atp_core::time::from_micros(after.updated_at_micros);
        arg(&mut sql, " AND (t.updated_at, t.id) < (?", Box::new(at));
        arg(&mut sql, ", ?)", Box::new(after.id.0));
    }
    let fetch = i64::from(filter.effective_limit()) + 1;
    arg(
        &mut sql,
        " ORDER BY t.updated_at DESC, t.id DESC LIMIT ?",
        Box::new(fetch),
    );
    Ok((sql, args))
}

#[cfg(test)]
mod tests {
    use atp_core::{Handler, Store, StoreOptions, TaskFilter, TaskType, TypeName};

    use crate::testing::{PgDb, TestDb};

    /// The plan PostgreSQL chooses for what a listing with `filter` runs,
    /// among 20,000 tasks of which a handful match the prefix.
    async fn plan(
        raw: &tokio_postgres::Client,
        filter: &TaskFilter,
        type_id: Option<i64>,
    ) -> String {
        let (sql, args) =
            super::list_query(filter, type_id, crate::row::LAST_MESSAGE_COLUMN).unwrap();
        let args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            args.iter().map(|a| &**a as _).collect();
        let rows = raw
            .query(&format!("EXPLAIN (COSTS OFF) {sql}"), &args)
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A prefix search walks its range of `atp_task_identifier`, with and
    /// without a type, never the whole table or the update-order index;
    /// each listed task's last message is one probe of `atp_task_log_task`.
    #[tokio::test]
    async fn a_prefix_search_reads_an_index_range() {
        let Some(db) = PgDb::new().await else { return };
        let store = db.open(StoreOptions::default()).await;
        let t = TypeName::new("t").unwrap();
        store
            .task_type_upsert(&TaskType::new(t.clone(), Handler::new("h").unwrap()))
            .await
            .unwrap();
        let raw = db.raw().await;
        raw.batch_execute(
            "SET enable_bitmapscan = off;
             INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at,
                 enqueued_at, due_at, starts, lease, input)
             SELECT (SELECT id FROM atp_task_type WHERE name = 't'), 'task-' || i, 5,
                 now(), now(), now(), now(), 1, 1, 'null'
             FROM generate_series(1, 20000) AS i;
             INSERT INTO atp_task_log (task_id, time, status, message)
             SELECT id, now(), s, 'logged' FROM atp_task, generate_series(1, 5) AS s;
             ANALYZE",
        )
        .await
        .unwrap();
        let type_id: i64 = raw
            .query_one("SELECT id FROM atp_task_type WHERE name = 't'", &[])
            .await
            .unwrap()
            .get(0);
        let mut filter = TaskFilter {
            identifier_prefix: Some("task-1234".into()),
            ..TaskFilter::default()
        };
        for type_id in [None, Some(type_id)] {
            filter.task_type = type_id.map(|_| t.clone());
            let plan = plan(&raw, &filter, type_id).await;
            assert!(plan.contains("atp_task_identifier"), "{plan}");
            assert!(!plan.contains("Seq Scan on atp_task "), "{plan}");
            // The last message: one probe of the log's index per task.
            assert!(plan.contains("atp_task_log_task"), "{plan}");
            assert!(!plan.contains("Seq Scan on atp_task_log"), "{plan}");
        }
    }
}
