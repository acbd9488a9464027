//! Model-based test of the store protocol: random sequences of store
//! operations (enqueues with due times and priorities, claims and
//! claim-starts, starts, heartbeats, every holder's change, cancels,
//! re-enqueues, deletes, both rescues, daemon records, type pauses and
//! clock moves) run against an engine and against [`rules::Model`], a
//! small pure reference of the rules. Every result (which error, which
//! tasks a claim takes and in which order) and every state read back after
//! each step must agree.
//!
//! One database serves every case of an engine (the case's types get
//! fresh names and are deleted with their tasks afterwards), so the
//! PostgreSQL half does not pay for a schema per case.
//!
//! Cases: `ATP_MODEL_CASES` (default 2,000 on SQLite) and
//! `ATP_MODEL_PG_CASES` (default 300 on PostgreSQL, which runs when a
//! server is configured as for the other PostgreSQL tests).

mod driver;
mod ops;
mod rules;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use atp_core::{DaemonId, Store, StoreOptions, TestClock};
use atp_store::testing::TestDb;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use driver::Case;

/// A case that takes longer than this has hung (a case is at most 30
/// steps; each takes milliseconds).
const CASE_DEADLINE: Duration = Duration::from_secs(30);

fn cases(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `n` cases against the handle `store` (whose clock is `clock`).
fn run<S: Store + Clone>(
    rt: &tokio::runtime::Runtime,
    store: S,
    clock: TestClock,
    n: u32,
    name: &str,
) {
    let counter = AtomicUsize::new(0);
    let ambiguous = AtomicUsize::new(0);
    let config = Config {
        cases: n,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = proptest::collection::vec(ops::op(), 1..30);
    let started = std::time::Instant::now();
    let result = runner.run(&strategy, |steps| {
        let k = counter.fetch_add(1, Ordering::SeqCst);
        let case = Case {
            store: &store,
            clock: &clock,
            types: driver::task_types(&format!("m{k}"))
                .into_iter()
                .map(|t| t.name)
                .collect(),
            daemons: [DaemonId(0xD0), DaemonId(0xD1), DaemonId(0xD2)],
        };
        let outcome = rt.block_on(async {
            let run = async {
                for t in driver::task_types(&format!("m{k}")) {
                    store
                        .task_type_upsert(&t)
                        .await
                        .map_err(|e| format!("registering: {e}"))?;
                }
                let left = store
                    .task_counts()
                    .await
                    .map_err(|e| e.to_string())?
                    .total();
                if left != 0 {
                    return Err(format!("{left} task(s) left over from an earlier case"));
                }
                let mut model = rules::Model::default();
                for op in &steps {
                    case.step(&mut model, op).await?;
                }
                Ok(())
            };
            let result = match tokio::time::timeout(CASE_DEADLINE, run).await {
                Ok(r) => r,
                Err(_) => Err(format!("the case did not end within {CASE_DEADLINE:?}")),
            };
            case.clean_up().await;
            result
        });
        outcome.map_err(|e| {
            if e.contains("ambiguous timing") {
                // The machine stalled for seconds inside the case, so the
                // step's "now" cannot decide a time: a limit of the test,
                // not a disagreement.
                ambiguous.fetch_add(1, Ordering::SeqCst);
                TestCaseError::reject(e)
            } else {
                TestCaseError::fail(e)
            }
        })
    });
    eprintln!(
        "{name}: {} case(s) in {:.1} s ({} discarded for a stalled clock); steps by outcome:",
        counter.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64(),
        ambiguous.load(Ordering::SeqCst)
    );
    let prefix = format!("{}: ", store.engine());
    for (what, n) in driver::SEEN.lock().unwrap().iter() {
        if let Some(what) = what.strip_prefix(&prefix) {
            eprintln!("  {what}: {n}");
        }
    }
    if let Err(e) = result {
        panic!("{name}: the engine and the model disagree: {e}");
    }
}

fn options(clock: &TestClock) -> StoreOptions {
    StoreOptions {
        clock: clock.clock(),
        max_queue_size: rules::QUEUE_LIMIT,
        ..StoreOptions::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn sqlite_agrees_with_the_model() {
    let rt = runtime();
    let clock = TestClock::new();
    let (db, store) = rt.block_on(async {
        let db = atp_store::testing::sqlite_db().await.expect("SQLite");
        let store = db.open(options(&clock)).await;
        (db, store)
    });
    run(&rt, store, clock, cases("ATP_MODEL_CASES", 2000), "sqlite");
    drop(db);
}

#[test]
fn postgres_agrees_with_the_model() {
    let rt = runtime();
    let clock = TestClock::new();
    let Some((db, store)) = rt.block_on(async {
        let db = atp_store::testing::postgres_db().await?;
        let store = db.open(options(&clock)).await;
        Some((db, store))
    }) else {
        return;
    };
    run(
        &rt,
        store,
        clock,
        cases("ATP_MODEL_PG_CASES", 300),
        "postgres",
    );
    // The schema is dropped on a thread of its own (see `PgDb`'s drop).
    drop(db);
}
