//! The query plans of the claims and of the promotion of due tasks with
//! 100,000 delayed and 100,000 queued tasks at mixed priorities (issue 11:
//! a claim must cost what it costs on an empty queue). Mirrors
//! sqlite/due_plans.rs.
//!
//! Each statement must walk its partial index in order (`atp_task_queue`,
//! `atp_task_queue_type` restricted, `atp_task_delayed` for the promotion
//! and the next-due probe), scan no table and sort no task rows: the sorts
//! a claim may do are of the rows it claimed, or of the few candidates the
//! restricted claim took (`LIMIT`ed) from each type's index.

use atp_core::{DaemonId, Store as _};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::{due, queue};
use crate::testing::{PgDb, TestDb as _};

/// Delayed tasks and queued tasks, each.
const ROWS: i64 = 100_000;

/// [`ROWS`] delayed tasks (due in a year), [`ROWS`] queued tasks at
/// priorities -1..=5 and 20,000 finished ones, of types `a` and `b`, then
/// `VACUUM ANALYZE` (what autovacuum does after such a fill).
async fn load(raw: &Client) {
    raw.batch_execute(&format!(
        "INSERT INTO atp_task_type (name, handler, timeout_secs, retention_secs, max_starts, created_at, updated_at)
           VALUES ('a', 'builtin:noop', 3600, -1, 3, now(), now()),
                  ('b', 'builtin:noop', 3600, -1, 3, now(), now());
         INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at,
                 enqueued_at, due_at, delayed, priority, starts, lease, input)
           SELECT (SELECT id FROM atp_task_type WHERE name = CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END),
                  k || i, CASE k WHEN 'f' THEN 5 ELSE 1 END, now(), now(), now(),
                  CASE k WHEN 'd' THEN now() + interval '1 year' ELSE now() END,
                  k = 'd', i % 7 - 1, 0, 0, 'null'
           FROM (VALUES ('d', {ROWS}), ('q', {ROWS}), ('f', 20000)) AS m (k, n),
                generate_series(1, m.n) AS i;"
    ))
    .await
    .unwrap();
    raw.batch_execute("VACUUM ANALYZE atp_task").await.unwrap();
}

/// `EXPLAIN (COSTS OFF)` of `sql`, one line per row.
pub(super) async fn plan(raw: &Client, sql: &str, args: &[&(dyn ToSql + Sync)]) -> String {
    raw.query(&format!("EXPLAIN (COSTS OFF) {sql}"), args)
        .await
        .unwrap_or_else(|e| panic!("explaining {sql}: {e}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A node of a text plan: how deep it sits (the column of its `->`, zero
/// for the root and for `CTE …`/`InitPlan …` headings at their own), and
/// its text. Detail lines (`Filter:`, `Sort Key:` …) are not nodes.
fn nodes(plan: &str) -> Vec<(usize, &str)> {
    plan.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let text = line.trim_start();
            let depth = line.len() - text.len();
            if let Some(node) = text.strip_prefix("->") {
                Some((depth + 2, node.trim_start()))
            } else if i == 0
                || ["CTE ", "InitPlan ", "SubPlan "]
                    .iter()
                    .any(|h| text.starts_with(h))
            {
                Some((depth, text))
            } else {
                None
            }
        })
        .collect()
}

/// A scan reading rows of the task table itself (not of `atp_task_type`).
fn scans_tasks(node: &str) -> bool {
    node.contains("Scan")
        && node
            .split(" on ")
            .nth(1)
            .is_some_and(|rest| rest == "atp_task" || rest.starts_with("atp_task "))
}

/// What is wrong with `plan` for a statement that should walk `index`: the
/// index not walked in order, a sequential or bitmap scan of the task
/// table, or a sort over task rows that no `LIMIT` bounds below it (found
/// by id from the primary key is a bounded look-up, not a walk).
fn problems(plan: &str, index: &str) -> Vec<String> {
    let mut found = Vec::new();
    let nodes = nodes(plan);
    let walk = format!("Scan using {index} on atp_task");
    if !nodes.iter().any(|(_, n)| {
        (n.starts_with("Index Scan ") || n.starts_with("Index Only Scan "))
            && n.contains(&walk)
            && !n.contains(&format!("{walk}_"))
    }) {
        found.push(format!("does not walk {index}"));
    }
    let mut above: Vec<(usize, &str)> = Vec::new();
    for &(depth, node) in &nodes {
        while above.last().is_some_and(|&(d, _)| d >= depth) {
            above.pop();
        }
        if scans_tasks(node) {
            if node.starts_with("Seq Scan") || node.starts_with("Bitmap") {
                found.push(format!("scans the table: {node}"));
            }
            let by_id = node.contains("using atp_task_pkey ");
            // A count (the held tasks of a limited type, bounded by the
            // held tasks there are) feeds no sort, whatever sorts above it.
            let nearest = above.iter().rev().find(|(_, n)| {
                n.starts_with("Limit") || n.contains("Sort") || n.starts_with("Aggregate")
            });
            if !by_id && nearest.is_some_and(|(_, n)| n.contains("Sort")) {
                found.push(format!("sorts task rows: {node}"));
            }
        }
        above.push((depth, node));
    }
    found
}

/// The plans of everything a claim sends (the promotion, then one of the
/// four claims) and of the idle daemon's next-due probe, with the index
/// each must walk.
async fn statements(raw: &Client) -> Vec<(&'static str, String, &'static str)> {
    let holder = DaemonId(0xDEAD_BEEF_0000_0003).to_db();
    let names = vec!["a", "b"];
    let (m, limit, shown) = (&"m", &64i64, &"h");
    vec![
        (
            "promotion",
            plan(raw, due::PROMOTE, &[&due::PROMOTE_BATCH]).await,
            "atp_task_delayed",
        ),
        (
            "claim",
            plan(raw, &queue::claim_sql(false, false), &[&holder, m, limit]).await,
            "atp_task_queue",
        ),
        (
            "claim and start",
            plan(
                raw,
                &queue::claim_start_sql(false, false),
                &[&holder, m, limit, shown, limit],
            )
            .await,
            "atp_task_queue",
        ),
        (
            "restricted claim",
            plan(
                raw,
                &queue::claim_sql(true, false),
                &[&holder, m, limit, &names],
            )
            .await,
            "atp_task_queue_type",
        ),
        (
            "restricted claim and start",
            plan(
                raw,
                &queue::claim_start_sql(true, false),
                &[&holder, m, limit, shown, limit, &names],
            )
            .await,
            "atp_task_queue_type",
        ),
        (
            "limited claim and start (types with a running limit exist)",
            plan(
                raw,
                &queue::claim_start_sql(true, true),
                &[&holder, m, limit, shown, limit, &names],
            )
            .await,
            "atp_task_queue_type",
        ),
        (
            "next due",
            plan(raw, due::NEXT_DUE, &[]).await,
            "atp_task_delayed",
        ),
    ]
}

/// With 100,000 tasks delayed and 100,000 queued, every claim walks its
/// queue index, the promotion and the next-due probe `atp_task_delayed`;
/// none scans or sorts the task table. On a plain session, where bitmap scans
/// are allowed (ATP's sessions turn them off, mod.rs): stricter.
#[tokio::test]
async fn claims_and_promotion_walk_their_indexes_among_delayed_and_queued_tasks() {
    let Some(db) = PgDb::new().await else { return };
    let raw = db.raw().await;
    load(&raw).await;
    for (what, plan, index) in statements(&raw).await {
        println!("{what}:\n{plan}\n");
        let wrong = problems(&plan, index);
        assert!(wrong.is_empty(), "{what}: {wrong:?}\n{plan}");
    }
}

/// The check above sees broken plans: without the three partial indexes
/// every statement is reported.
#[tokio::test]
async fn plans_without_the_partial_indexes_are_reported() {
    let Some(db) = PgDb::new().await else { return };
    let raw = db.raw().await;
    load(&raw).await;
    raw.batch_execute(
        "DROP INDEX atp_task_queue; DROP INDEX atp_task_queue_type; DROP INDEX atp_task_delayed;
         ANALYZE atp_task",
    )
    .await
    .unwrap();
    for (what, plan, index) in statements(&raw).await {
        let wrong = problems(&plan, index);
        assert!(
            wrong.iter().any(|w| w.starts_with("does not walk")) && wrong.len() > 1,
            "{what} should be reported: {wrong:?}\n{plan}"
        );
    }
}

/// Counts by type and status read the count table (and the deltas they
/// fold), never the task table, and agree with a count of the rows after a
/// bulk load that went around the store (the triggers counted it).
#[tokio::test]
async fn counts_read_the_count_table_and_agree_with_the_rows() {
    let Some(db) = PgDb::new().await else { return };
    let raw = db.raw().await;
    load(&raw).await;
    for sql in [super::task::FOLD_COUNTS, super::task::COUNTS] {
        let plan: Vec<String> = raw
            .query(&format!("EXPLAIN (COSTS OFF) {sql}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(!plan.contains("on atp_task "), "{plan}");
        assert!(
            !plan.contains("on atp_task\n") && !plan.ends_with("on atp_task"),
            "{plan}"
        );
    }
    let kept: Vec<(String, i16, i64)> = {
        let counts = db.store().task_counts().await.unwrap();
        counts
            .by_type
            .iter()
            .map(|(t, status, n)| (t.to_string(), i16::from(status.code()), *n as i64))
            .collect()
    };
    let counted: Vec<(String, i16, i64)> = raw
        .query(
            "SELECT y.name, t.status, count(*) FROM atp_task t JOIN atp_task_type y ON y.id = t.type_id
             GROUP BY y.name, t.status ORDER BY y.name COLLATE \"C\", t.status",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(kept, counted);
    assert_eq!(kept.iter().map(|k| k.2).sum::<i64>(), 2 * ROWS + 20_000);
}
