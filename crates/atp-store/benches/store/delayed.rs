//! The `--delayed` probe (issue 11): what a claim costs with 100,000
//! delayed tasks (due in a year) and 100,000 queued tasks at priorities
//! -1..=5, against the same claims on a nearly empty queue (4,000 queued
//! tasks, the same priorities, nothing delayed). Two more shapes split
//! that case in its halves: 200,000 queued and nothing delayed (the
//! table's size alone), 200,000 delayed beside 4,000 queued (the delayed
//! tasks alone).
//!
//! Each figure is the median and the 99th percentile of [`PROBES`] single
//! one-task claims (`task_claim`, then as many `task_claim_start`), so every
//! claim also runs the promotion of due delayed tasks, which finds none.
//! The claims take the head of the queue and leave the rest: 4,000 of
//! 100,000 queued, so the big queue stays full; the small one drains to
//! empty, which is the "empty queue" end of the comparison. The nearly
//! empty case runs before and after every shape (refilled with 4,000
//! tasks), so drift of a shared machine shows.

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
        let per_claim = |i: usize| (after[i] - before[i]) as f64 / (2 * PROBES) as f64;
        println!(
            "  WAL per claim: {:.1} records, {:.2} full-page images, {:.0} bytes",
            per_claim(0),
            per_claim(1),
            per_claim(2),
        );
    }
    (summary(claim), summary(start))
}

/// PostgreSQL's WAL counters (see `pg::wal`); `None` on SQLite.
async fn fpi(store: &AnyStore) -> Option<[i64; 3]> {
    match store {
        AnyStore::Postgres(_) => Some(super::pg::wal().await),
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

/// One loaded store's contents: delayed tasks and queued tasks.
struct Shape {
    name: &'static str,
    delayed: usize,
    queued: usize,
}

/// The case first, then the two halves of it, so a rise can be
/// told apart: the table's size alone (as many tasks, all queued) and the
/// delayed tasks alone (beside a nearly empty queue).
const SHAPES: [Shape; 3] = [
    Shape {
        name: "200k queued, none delayed",
        delayed: 0,
        queued: 2 * LOADED,
    },
    Shape {
        name: "200k delayed + 4k queued",
        delayed: 2 * LOADED,
        queued: NEARLY_EMPTY,
    },
    Shape {
        name: "100k delayed + 100k queued",
        delayed: LOADED,
        queued: LOADED,
    },
];

type Figures = ((f64, f64), (f64, f64));

/// A fresh store beside `empty`, filled to `shape`, settled, probed.
async fn probe_shape(engine: &str, empty: &Db, shape: &Shape) -> Figures {
    let loaded = super::fresh_beside(engine, empty).await;
    let t = register(&loaded.store, task_type("bench")).await;
    let filled = Instant::now();
    fill(&loaded.store, &t, shape.delayed, "d", Some(FAR)).await;
    fill(&loaded.store, &t, shape.queued, "q", None).await;
    settle(&loaded).await;
    println!(
        "{}: filled in {:.1} s",
        shape.name,
        filled.elapsed().as_secs_f64()
    );
    claims(&loaded.store).await
}

/// The nearly empty queue, refilled with [`NEARLY_EMPTY`] tasks and probed.
async fn probe_empty(empty: &Db, round: usize) -> Figures {
    let t = register(&empty.store, task_type("bench")).await;
    fill(&empty.store, &t, NEARLY_EMPTY, &format!("e{round}-"), None).await;
    settle(empty).await;
    claims(&empty.store).await
}

/// The nearly empty queue is probed before and after every shape, so
/// drift of a shared machine shows; each shape is compared with the mean
/// of the empty probes on either side of it.
pub async fn run(engine: &str, empty: &Db) {
    let mut before = probe_empty(empty, 0).await;
    let mut rows = Vec::new();
    for (round, shape) in SHAPES.iter().enumerate() {
        let loaded = probe_shape(engine, empty, shape).await;
        let after = probe_empty(empty, round + 1).await;
        rows.push((shape.name, before, loaded, after));
        before = after;
    }
    for (name, before, loaded, after) in rows {
        for (what, b, l, a) in [
            ("claim      ", before.0, loaded.0, after.0),
            ("claim_start", before.1, loaded.1, after.1),
        ] {
            let base50 = (b.0 + a.0) / 2.0;
            let base99 = (b.1 + a.1) / 2.0;
            println!(
                "{name:<28} {what}  p50 {:>7.1} us ({:+.0}%)  p99 {:>7.1} us ({:+.0}%)   \
                 empty before/after: p50 {:>7.1} / {:>7.1} us  p99 {:>7.1} / {:>7.1} us",
                l.0,
                super::pct(base50, l.0),
                l.1,
                super::pct(base99, l.1),
                b.0,
                a.0,
                b.1,
                a.1,
            );
        }
    }
}
