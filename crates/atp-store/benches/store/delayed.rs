//! The `--delayed` probe (issue 11): what a claim costs with 100,000
//! delayed tasks (due in a year) and 100,000 queued tasks at priorities
//! -1..=5, against the same claims on a nearly empty queue (4,000 queued
//! tasks, the same priorities, nothing delayed).
//!
//! Each figure is the median and the 99th percentile of [`PROBES`] single
//! one-task claims (`task_claim`, then as many `task_claim_start`), so every
//! claim also runs the promotion of due delayed tasks, which finds none.
//! The claims take the head of the queue and leave the rest: 4,000 of
//! 100,000 queued, so the big queue stays full; the small one drains to
//! empty, which is the "empty queue" end of the comparison. The nearly
//! empty case runs again after the full one (refilled with 4,000 tasks),
//! so drift of a shared machine between the two shows.

use std::time::{Duration, Instant};

use atp_core::{ClaimParams, DaemonId, Due, NewTask, Store, TypeName};
use atp_store::AnyStore;
use atp_store::conformance::{ident, register, task_type};

use super::{BATCH, Db, PROBES, median};

/// Delayed tasks and queued tasks in the full case, each.
pub const LOADED: usize = 100_000;
/// Queued tasks in the nearly empty case: enough for both probes.
const NEARLY_EMPTY: usize = 2 * PROBES;
/// Far enough ahead that no delayed task comes due during the run.
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// Queued (or, with `delay`, delayed) tasks in batches of 1,000 through
/// `task_enqueue_many`, so the queue counters stay right; priorities cycle
/// through -1..=5.
async fn fill(store: &AnyStore, t: &TypeName, n: usize, prefix: &str, delay: Option<Duration>) {
    for chunk in 0..n.div_ceil(BATCH) {
        let batch = (0..BATCH.min(n - chunk * BATCH))
            .map(|i| {
                let task = NewTask::new(t.clone(), ident(&format!("{prefix}{chunk}-{i}")))
                    .with_priority((i % 7) as i32 - 1);
                match delay {
                    Some(d) => task.with_due(Due::After(d)),
                    None => task,
                }
            })
            .collect();
        store.task_enqueue_many(batch).await.unwrap();
    }
}

/// (median, p99) in microseconds.
fn summary(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    let p99 = xs[(xs.len() * 99 / 100).min(xs.len() - 1)];
    (median(xs), p99)
}

/// [`PROBES`] one-task claims, then [`PROBES`] one-task claim-and-starts.
async fn claims(store: &AnyStore) -> ((f64, f64), (f64, f64)) {
    let fpi_before = fpi(store).await;
    let params = ClaimParams::new(DaemonId(9), 1);
    let mut claim = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let t = Instant::now();
        let got = store.task_claim(&params).await.unwrap();
        claim.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(got.len(), 1);
    }
    let mut start = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let t = Instant::now();
        let got = store.task_claim_start(&params).await.unwrap();
        start.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(got.len(), 1);
    }
    if let (Some(before), Some(after)) = (fpi_before, fpi(store).await) {
        println!(
            "  full-page images in the WAL: {:.2} per claim ({} over {} claims)",
            (after - before) as f64 / (2 * PROBES) as f64,
            after - before,
            2 * PROBES
        );
    }
    (summary(claim), summary(start))
}

/// PostgreSQL's WAL full-page image count (see `pg::wal_fpi`); `None` on
/// SQLite.
async fn fpi(store: &AnyStore) -> Option<i64> {
    match store {
        AnyStore::Postgres(_) => Some(super::pg::wal_fpi().await),
        AnyStore::Sqlite(_) => None,
    }
}

/// Statistics and a checkpoint after a fill, as the `--scale` probe does,
/// so the claims measure the queries, not the checkpointer.
async fn settle(db: &Db) {
    match &db.store {
        AnyStore::Sqlite(s) => {
            let conn = rusqlite::Connection::open(s.path().unwrap()).unwrap();
            conn.execute_batch("ANALYZE").unwrap();
        }
        AnyStore::Postgres(_) => {
            super::pg::vacuum_analyze(db, "atp_task").await;
            // The log records too: else autovacuum takes them on during
            // the probes, competing for this 2-core machine's CPU.
            super::pg::vacuum_analyze(db, "atp_task_log").await;
            super::pg::checkpoint().await;
        }
    }
}

pub async fn run(empty: &Db, loaded: &Db) {
    let t = register(&empty.store, task_type("bench")).await;
    fill(&empty.store, &t, NEARLY_EMPTY, "e", None).await;
    settle(empty).await;
    let (claim_empty, start_empty) = claims(&empty.store).await;

    let t = register(&loaded.store, task_type("bench")).await;
    let filled = Instant::now();
    fill(&loaded.store, &t, LOADED, "d", Some(FAR)).await;
    fill(&loaded.store, &t, LOADED, "q", None).await;
    settle(loaded).await;
    println!(
        "filled {LOADED} delayed + {LOADED} queued tasks (priorities -1..=5) in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    let (claim_full, start_full) = claims(&loaded.store).await;

    // The nearly empty queue again, after the big one: how far the machine
    // drifted between the two ends of the comparison.
    let t = register(&empty.store, task_type("bench")).await;
    fill(&empty.store, &t, NEARLY_EMPTY, "e2-", None).await;
    settle(empty).await;
    let (claim_again, start_again) = claims(&empty.store).await;
    for (what, (e50, e99), (f50, f99), (a50, a99)) in [
        ("claim one task      ", claim_empty, claim_full, claim_again),
        ("claim_start one task", start_empty, start_full, start_again),
    ] {
        println!(
            "{what}  empty: p50 {e50:>7.1} us  p99 {e99:>7.1} us   \
             100k delayed + 100k queued: p50 {f50:>7.1} us ({:+.0}%)  p99 {f99:>7.1} us ({:+.0}%)   \
             empty again: p50 {a50:>7.1} us  p99 {a99:>7.1} us",
            super::pct(e50, f50),
            super::pct(e99, f99),
        );
    }
}
