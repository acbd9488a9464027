//! Store benchmarks: enqueue (one at a time and in batches of 1,000), the
//! claim → start → finish cycle as the daemon batches it (in two calls, or
//! with claim and start in one, `task_claim_start`), and the cost of a
//! claim and a status look-up on empty tables versus 1,000,000 finished
//! tasks. Prints the median of several runs per figure. `--delayed`: the
//! claim's cost with 100,000 delayed and 100,000 queued tasks at mixed
//! priorities against a nearly empty queue (delayed.rs); `--runs 0` runs
//! the probes alone.
//!
//! ```text
//! cargo bench -p atp-store --bench store -- [sqlite|postgres] [--runs N] [--scale] [--delayed]
//! ```
//! PostgreSQL: `ATP_BENCH_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each run uses a fresh
//! schema, dropped afterwards. SQLite: a fresh file in a temporary folder,
//! WAL with synchronous=NORMAL (the defaults).

use std::time::{Duration, Instant};

use atp_core::{ClaimParams, DaemonId, NewTask, StatusChange, Store, StoreOptions, TaskRef};
use atp_store::AnyStore;
use atp_store::conformance::{ident, register, task_type};

const SINGLE: usize = 3_000;
const BATCHES: usize = 50;
const BATCH: usize = 1_000;
const CYCLE_TASKS: usize = 20_000;
const CYCLE_BATCH: u32 = 64;
const PROBES: usize = 2_000;
const FILLED: i64 = 1_000_000;

struct Db {
    store: AnyStore,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

fn options() -> StoreOptions {
    StoreOptions {
        max_queue_size: 0,
        ..StoreOptions::default()
    }
}

async fn fresh(engine: &str) -> Db {
    match engine {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("bench.sqlite").display());
            Db {
                store: atp_store::open(&url, options()).await.unwrap(),
                _dir: Some(dir),
                schema: None,
            }
        }
        "postgres" => pg::fresh().await,
        other => panic!("unknown engine {other} (sqlite or postgres)"),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn enqueue_single(db: &Db) -> f64 {
    let t = register(&db.store, task_type("bench")).await;
    let start = Instant::now();
    for i in 0..SINGLE {
        db.store
            .task_enqueue(
                NewTask::new(t.clone(), ident(&format!("s{i}")))
                    .with_input(serde_json::json!({"i": i})),
            )
            .await
            .unwrap();
    }
    rate(SINGLE, start.elapsed())
}

async fn enqueue_batches(db: &Db) -> f64 {
    let t = register(&db.store, task_type("bench")).await;
    let batches: Vec<Vec<NewTask>> = (0..BATCHES)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    NewTask::new(t.clone(), ident(&format!("b{b}-{i}")))
                        .with_input(serde_json::json!({"i": i}))
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    for batch in batches {
        db.store.task_enqueue_many(batch).await.unwrap();
    }
    rate(BATCHES * BATCH, start.elapsed())
}

async fn fill_queue(store: &AnyStore, n: usize, prefix: &str) {
    let t = register(store, task_type("bench")).await;
    for chunk in 0..n.div_ceil(BATCH) {
        let batch = (0..BATCH.min(n - chunk * BATCH))
            .map(|i| NewTask::new(t.clone(), ident(&format!("{prefix}{chunk}-{i}"))))
            .collect();
        store.task_enqueue_many(batch).await.unwrap();
    }
}

/// One claimer: claim 64 → start them → finish them, until the queue is empty.
async fn cycle(db: &Db) -> f64 {
    fill_queue(&db.store, CYCLE_TASKS, "c").await;
    let holder = DaemonId(7);
    let start = Instant::now();
    let mut done = 0;
    loop {
        let claimed = db
            .store
            .task_claim(&ClaimParams::new(holder, CYCLE_BATCH))
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        let attempts: Vec<_> = claimed.iter().map(|c| c.attempt).collect();
        for r in db.store.task_start_many(&attempts).await.unwrap() {
            r.unwrap();
        }
        let changes: Vec<_> = attempts
            .iter()
            .map(|a| StatusChange::finish(*a, "done"))
            .collect();
        for r in db.store.task_set_status_many(&changes).await.unwrap() {
            r.unwrap();
        }
        done += attempts.len();
    }
    assert_eq!(done, CYCLE_TASKS);
    rate(done, start.elapsed())
}

/// One claimer: claim and start 64 in one call → finish them, until the
/// queue is empty.
async fn cycle_claim_start(db: &Db) -> f64 {
    fill_queue(&db.store, CYCLE_TASKS, "c").await;
    let holder = DaemonId(7);
    let start = Instant::now();
    let mut done = 0;
    loop {
        let started = db
            .store
            .task_claim_start(&ClaimParams::new(holder, CYCLE_BATCH))
            .await
            .unwrap();
        if started.is_empty() {
            break;
        }
        let changes: Vec<_> = started
            .iter()
            .map(|t| StatusChange::finish(t.attempt, "done"))
            .collect();
        for r in db.store.task_set_status_many(&changes).await.unwrap() {
            r.unwrap();
        }
        done += started.len();
    }
    assert_eq!(done, CYCLE_TASKS);
    rate(done, start.elapsed())
}

/// Median microseconds of a one-task claim and of a status look-up by key.
async fn probe(db: &Db, prefix: &str) -> (f64, f64) {
    fill_queue(&db.store, PROBES, prefix).await;
    let mut claims = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let t = Instant::now();
        let got = db
            .store
            .task_claim(&ClaimParams::new(DaemonId(9), 1))
            .await
            .unwrap();
        claims.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(got.len(), 1);
    }
    let bench = atp_core::TypeName::new("bench").unwrap();
    let mut gets = Vec::with_capacity(PROBES);
    for i in 0..PROBES {
        let key = TaskRef::Key(
            bench.clone(),
            ident(&format!("{prefix}{}-{}", i / BATCH, i % BATCH)),
        );
        let t = Instant::now();
        db.store.task_get(&key).await.unwrap();
        gets.push(t.elapsed().as_secs_f64() * 1e6);
    }
    (median(claims), median(gets))
}

async fn fill_finished(db: &Db) {
    match &db.store {
        AnyStore::Sqlite(s) => sqlite_fill(s.path().unwrap()),
        AnyStore::Postgres(_) => pg::fill(db).await,
    }
}

/// 1,000,000 FINISHED tasks with four log records each, by plain SQL (the
/// API would take minutes to make them and measure nothing new).
fn sqlite_fill(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "BEGIN;
         INSERT INTO atp_task_type (name, handler, timeout_secs, retention_secs, max_starts, created_at, updated_at)
           VALUES ('old', 'builtin:noop', 3600, -1, 3, 0, 0);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {FILLED})
         INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at, enqueued_at, starts, lease, holder, input)
           SELECT (SELECT id FROM atp_task_type WHERE name = 'old'), 'old-' || i, 5, 1000000 + i, 2000000 + i, 1000000 + i, 1, 1, 7, 'null' FROM n;
         INSERT INTO atp_task_log (task_id, time, status, message)
           SELECT t.id, t.updated_at, s.status, 'filled'
           FROM atp_task t JOIN atp_task_type y ON y.id = t.type_id, (SELECT 1 AS status UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 5) s
           WHERE y.name = 'old';
         COMMIT;
         ANALYZE;"
    ))
    .unwrap();
}

mod delayed;
mod pg;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let engine = args
        .iter()
        .find(|a| !a.starts_with("--") && a.parse::<usize>().is_err())
        .cloned()
        .unwrap_or_else(|| "sqlite".into());
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map_or(5, |n| n.parse().unwrap());
    let scale = args.iter().any(|a| a == "--scale");
    let delayed = args.iter().any(|a| a == "--delayed");
    println!("engine {engine}, {runs} runs, medians");

    let mut single = Vec::new();
    let mut batched = Vec::new();
    let mut cycles = Vec::new();
    let mut joined = Vec::new();
    for _ in 0..runs {
        single.push(enqueue_single(&fresh(&engine).await).await);
        batched.push(enqueue_batches(&fresh(&engine).await).await);
        cycles.push(cycle(&fresh(&engine).await).await);
        joined.push(cycle_claim_start(&fresh(&engine).await).await);
    }
    if runs > 0 {
        report(&single, &batched, &cycles, &joined);
    }
    if scale {
        scale_probe(&engine).await;
    }
    if delayed {
        if engine == "postgres" {
            pg::checkpoint().await;
        }
        let empty = fresh(&engine).await;
        delayed::run(&engine, &empty).await;
    }
}

/// A second fresh store while `other` stays open (a PostgreSQL fresh
/// schema drops the schemas of earlier runs, `other`'s included).
async fn fresh_beside(engine: &str, other: &Db) -> Db {
    match engine {
        "postgres" => pg::fresh_keeping(other.schema.as_deref()).await,
        _ => fresh(engine).await,
    }
}

fn report(single: &[f64], batched: &[f64], cycles: &[f64], joined: &[f64]) {
    println!(
        "enqueue one at a time     {:>9.0} tasks/s   runs {:?}",
        median(single.to_vec()),
        rounded(single)
    );
    println!(
        "enqueue batches of 1,000  {:>9.0} tasks/s   runs {:?}",
        median(batched.to_vec()),
        rounded(batched)
    );
    println!(
        "claim 64 > start > finish {:>9.0} tasks/s   runs {:?}",
        median(cycles.to_vec()),
        rounded(cycles)
    );
    println!(
        "claim_start 64 > finish   {:>9.0} tasks/s   runs {:?}",
        median(joined.to_vec()),
        rounded(joined)
    );
}

async fn scale_probe(engine: &str) {
    let db = fresh(engine).await;
    if engine == "postgres" {
        pg::checkpoint().await;
    }
    let (claim_empty, get_empty) = probe(&db, "e").await;
    let t = Instant::now();
    fill_finished(&db).await;
    println!(
        "filled {FILLED} finished tasks in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (claim_full, get_full) = probe(&db, "f").await;
    println!(
        "claim one task            {claim_empty:>7.1} us empty   {claim_full:>7.1} us with 1M finished   ({:+.0}%)",
        pct(claim_empty, claim_full)
    );
    println!(
        "status look-up by key     {get_empty:>7.1} us empty   {get_full:>7.1} us with 1M finished   ({:+.0}%)",
        pct(get_empty, get_full)
    );
}

fn pct(base: f64, x: f64) -> f64 {
    (x / base - 1.0) * 100.0
}

fn rounded(xs: &[f64]) -> Vec<u64> {
    xs.iter().map(|x| *x as u64).collect()
}
