//! Delayed tasks: the claim's promotion of those whose time has come, and
//! how long an idle daemon may sleep before the next one is due.
//!
//! A queued task due later than its enqueue is `delayed` and waits in the
//! small partial index `atp_task_delayed (due_at, id)`, not in the claim's
//! indexes (migration 0008). Every claim first promotes the delayed tasks
//! that are due (clears the flag), in its own statement sent in the same
//! round trip just before the claim, so the claim's snapshot sees them. A
//! claim therefore walks only tasks that may run now, however many wait
//! for later; with nothing due, the promotion is one probe of an empty
//! index range and writes nothing.

use std::time::Duration;

use atp_core::Result;

use super::Conn;
use super::row::get;

/// How many due tasks one claim promotes at most. Larger backlogs coming
/// due at once are promoted over the next claims, in due order; meanwhile
/// a task enqueued for "now" may run before some of them.
pub(super) const PROMOTE_BATCH: i64 = 1000;

/// Clears `delayed` on up to [`PROMOTE_BATCH`] due tasks, oldest due time
/// first, skipping rows another claimer is promoting or claiming. Found by
/// id, a row re-checks `status + 0 = 1` (not `status = 1`, which would
/// match the partial indexes' predicate and tempt the planner to walk
/// them; see `queue.rs`).
///
/// It also answers whether any type has a limit of running tasks (see
/// `limit.rs`), so that a claim learns it without a round trip of its own.
pub(super) const PROMOTE: &str = "
WITH promoted AS (
    UPDATE atp_task t SET delayed = false
    FROM (SELECT id FROM atp_task WHERE status = 1 AND delayed AND due_at <= now()
          ORDER BY due_at, id LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED) d
    WHERE t.id = d.id AND t.status + 0 = 1 AND t.delayed
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM atp_task_type WHERE max_running IS NOT NULL)";

/// Seconds until the earliest delayed task is due: one probe of
/// `atp_task_delayed`.
pub(super) const NEXT_DUE: &str =
    "SELECT extract(epoch FROM (due_at - now()))::float8 FROM atp_task
     WHERE status = 1 AND delayed ORDER BY due_at, id LIMIT 1";

/// How long until the earliest delayed task is due (zero when one is due
/// already), `None` when no task is delayed.
pub(super) async fn next_due(c: Conn<'_>) -> Result<Option<Duration>> {
    let rows = c.query("finding the next due task", NEXT_DUE, &[]).await?;
    match rows.first() {
        None => Ok(None),
        Some(r) => {
            let secs: f64 = get(r, 0)?;
            Ok(Some(Duration::from_secs_f64(secs.max(0.0))))
        }
    }
}

/// Runs `claim` (a claim statement on `c`) right after the promotion of
/// due tasks, in the same round trip: `biased` polls the promotion first,
/// so its request reaches the server first and has taken effect (it is a
/// statement of its own, committed unless the caller's transaction holds
/// it) when the claim takes its snapshot. Also returns whether the
/// database has types with a limit of running tasks.
pub(super) async fn promoted_then<T>(
    c: Conn<'_>,
    claim: impl Future<Output = Result<T>>,
) -> Result<(T, bool)> {
    let promote = c.prepare("promoting due tasks", PROMOTE).await?;
    let (promoted, claimed) = tokio::join!(
        biased;
        c.query_prepared("promoting due tasks", &promote, &[&PROMOTE_BATCH]),
        claim,
    );
    let has_limits = match promoted?.first() {
        Some(r) => get(r, 0)?,
        None => true,
    };
    Ok((claimed?, has_limits))
}
