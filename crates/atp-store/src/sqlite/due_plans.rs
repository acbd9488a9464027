//! The query plans of the claim and of the promotion of due tasks with
//! 100,000 delayed and 100,000 queued tasks at mixed priorities (issue 11:
//! a claim must cost what it costs on an empty queue). Mirrors
//! postgres/due_plans.rs.
//!
//! The statements name their index (`INDEXED BY`), so a missing index
//! fails to prepare; what can still go wrong is an index whose order does
//! not match the claim's, which SQLite answers by sorting every queued or
//! delayed task in a temporary B-tree. So each plan must search the
//! intended index and sort nothing.

use rusqlite::{Connection, ToSql};

use super::{due, migrate, queue};

/// Delayed tasks and queued tasks, each.
const ROWS: i64 = 100_000;

/// A migrated in-memory database with [`ROWS`] delayed tasks (due in a
/// year), [`ROWS`] queued tasks at priorities -1..=5 and 20,000 finished
/// ones, of two types.
fn loaded() -> Connection {
    let mut conn = Connection::open_in_memory().unwrap();
    migrate::migrate(&mut conn, migrate::LATEST_VERSION).unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO atp_task_type (name, handler, timeout_secs, retention_secs, max_starts, created_at, updated_at)
           VALUES ('a', 'builtin:noop', 3600, -1, 3, 0, 0), ('b', 'builtin:noop', 3600, -1, 3, 0, 0);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
         INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at, enqueued_at,
                               due_at, delayed, priority, input)
           SELECT 1 + i % 2, 'd' || i, 1, i, i, i, 40000000000000000 + i, 1, i % 7 - 1, 'null' FROM n
           UNION ALL
           SELECT 1 + i % 2, 'q' || i, 1, i, i, i, i, 0, i % 7 - 1, 'null' FROM n
           UNION ALL
           SELECT 1, 'f' || i, 5, i, i, i, i, 0, 0, 'null' FROM n WHERE i <= 20000;"
    ))
    .unwrap();
    conn
}

/// The `detail` column of `EXPLAIN QUERY PLAN sql`, one line per step.
fn plan(conn: &Connection, sql: &str, args: &[&dyn ToSql]) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt.query_map(args, |r| r.get::<_, String>(3)).unwrap();
    rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
}

/// What is wrong with `plan` for a statement that should walk `index`:
/// the index unused, a sort, or a scan of the whole task table.
fn problems(plan: &str, index: &str) -> Vec<String> {
    let mut found = Vec::new();
    let walks = |l: &str| {
        (l.starts_with("SEARCH atp_task USING ") || l.starts_with("SCAN atp_task USING "))
            && (l.ends_with(&format!("INDEX {index}")) || l.contains(&format!("INDEX {index} ")))
    };
    if !plan.lines().any(walks) {
        found.push(format!("does not walk {index}"));
    }
    for line in plan.lines() {
        if line.contains("TEMP B-TREE") {
            found.push(format!("sorts: {line}"));
        }
        // A scan of the table, or of another of its indexes (a partial
        // index scanned in order is the intended walk).
        if line.starts_with("SCAN atp_task") && !line.starts_with("SCAN atp_task_") && !walks(line)
        {
            found.push(format!("scans the table: {line}"));
        }
    }
    found
}

/// The statements a claim runs (the promotion, then the unrestricted or
/// the restricted claim; a claim-and-start is the same claim, then starts
/// by id), the idle daemon's next-due probe, and the index each must walk.
fn statements(conn: &Connection) -> Vec<(&'static str, String, &'static str)> {
    let types = r#"["a","b"]"#;
    let (holder, now, limit) = (7i64, 1_000_000i64, 64i64);
    vec![
        (
            "promotion",
            plan(conn, due::PROMOTE, &[&now, &1000i64]),
            "atp_task_delayed",
        ),
        (
            "claim",
            plan(conn, queue::CLAIM, &[&holder, &now, &limit]),
            "atp_task_queue",
        ),
        (
            "restricted claim",
            plan(
                conn,
                queue::CLAIM_OF_TYPES,
                &[&holder, &now, &limit, &types],
            ),
            "atp_task_queue",
        ),
        (
            "next due",
            plan(conn, due::NEXT_DUE, &[]),
            "atp_task_delayed",
        ),
    ]
}

/// With 100,000 tasks delayed and 100,000 queued, the promotion and the
/// next-due probe search `atp_task_delayed`, the claims `atp_task_queue`,
/// each in its own order: no temporary B-tree, no table scan; before
/// `ANALYZE` (a new database) and after it.
#[test]
fn claims_and_promotion_walk_their_indexes_among_delayed_and_queued_tasks() {
    let conn = loaded();
    for stats in ["before ANALYZE", "after ANALYZE"] {
        if stats == "after ANALYZE" {
            conn.execute_batch("ANALYZE").unwrap();
        }
        for (what, plan, index) in statements(&conn) {
            println!("{what} ({stats}):\n{plan}\n");
            let wrong = problems(&plan, index);
            assert!(wrong.is_empty(), "{what} ({stats}): {wrong:?}\n{plan}");
        }
    }
}

/// The check above sees a broken plan: with the queue index in ascending
/// priority and the delayed index on `id` alone, SQLite must sort, and
/// every statement is reported.
#[test]
fn a_queue_index_in_the_wrong_order_is_reported() {
    let conn = loaded();
    conn.execute_batch(
        "DROP INDEX atp_task_queue;
         CREATE INDEX atp_task_queue ON atp_task (priority, due_at, enqueued_at, id)
             WHERE status = 1 AND delayed = 0;
         DROP INDEX atp_task_delayed;
         CREATE INDEX atp_task_delayed ON atp_task (id) WHERE status = 1 AND delayed = 1;",
    )
    .unwrap();
    for (what, plan, index) in statements(&conn) {
        assert!(
            problems(&plan, index)
                .iter()
                .any(|p| p.starts_with("sorts")),
            "{what} should sort now:\n{plan}"
        );
    }
}

/// Counts by type and status read the count table the triggers keep, never
/// the task table (their cost does not grow with it), and agree with a
/// count of the rows after a bulk load that went around the store.
#[test]
fn counts_read_the_count_table_and_agree_with_the_rows() {
    let conn = loaded();
    let plan = plan(&conn, super::task::COUNTS, &[]);
    assert!(
        !plan
            .lines()
            .any(|l| l.contains("atp_task ") || l.ends_with("atp_task")),
        "{plan}"
    );
    let kept = super::task::counts(&conn).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT y.name, t.status, count(*) FROM atp_task t JOIN atp_task_type y ON y.id = t.type_id
             GROUP BY y.name, t.status ORDER BY y.name, t.status",
        )
        .unwrap();
    let counted: Vec<(String, u8, u64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let kept: Vec<(String, u8, u64)> = kept
        .by_type
        .iter()
        .map(|(t, status, n)| (t.to_string(), status.code(), *n))
        .collect();
    assert_eq!(kept, counted);
    assert_eq!(
        kept.iter().map(|k| k.2).sum::<u64>(),
        2 * ROWS as u64 + 20_000
    );
}
