//! Daemon benchmarks: end-to-end no-op throughput (20,000 queued, then one
//! daemon drains them) and pick-up latency (idle daemon, enqueue → handler
//! start), on either engine. The same code path as `atp bench`.
//!
//! ```text
//! cargo bench -p atp-daemon --bench daemon -- [sqlite|postgres] [--runs N] [--tasks N] [--concurrency N] [--samples N]
//! ```
//! PostgreSQL: `ATP_BENCH_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), a fresh schema per run.

use std::time::Duration;

use atp_core::StoreOptions;
use atp_daemon::DaemonConfig;
use atp_daemon::bench::{pickup_latency, throughput};
use atp_store::AnyStore;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |n| n.parse().expect("a number"))
}

async fn fresh(engine: &str) -> (AnyStore, Option<tempfile::TempDir>, Option<String>) {
    let options = StoreOptions {
        max_queue_size: 0,
        ..StoreOptions::default()
    };
    match engine {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("bench.sqlite").display());
            (
                atp_store::open(&url, options).await.unwrap(),
                Some(dir),
                None,
            )
        }
        "postgres" => {
            let url = atp_store::testing::bench_database_url();
            let schema = format!("atp_dbench_{}", atp_store::testing::random_suffix());
            let store = atp_store::postgres::PgStore::connect_with_schema(&url, &schema, options)
                .await
                .unwrap();
            (AnyStore::Postgres(store), None, Some(schema))
        }
        other => panic!("unknown engine {other} (sqlite or postgres)"),
    }
}

async fn drop_schema(schema: Option<String>) {
    if let Some(schema) = schema {
        atp_store::testing::drop_schema(&atp_store::testing::bench_database_url(), &schema).await;
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let engine = args
        .iter()
        .find(|a| a.as_str() == "sqlite" || a.as_str() == "postgres")
        .cloned()
        .unwrap_or_else(|| "sqlite".into());
    let runs = arg(&args, "--runs", 3);
    let tasks = arg(&args, "--tasks", 20_000);
    let concurrency = arg(&args, "--concurrency", 8);
    let samples = arg(&args, "--samples", 300);
    println!(
        "engine {engine}, {runs} runs, {tasks} tasks, concurrency {concurrency}, {samples} latency samples"
    );
    let (mut enq, mut run, mut p50, mut p99) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let (store, _dir, schema) = fresh(&engine).await;
        let t = throughput(&store, tasks, concurrency, |_| {})
            .await
            .unwrap();
        let config = DaemonConfig {
            concurrency: 1,
            poll_interval: Duration::from_millis(200),
            ..DaemonConfig::default()
        };
        let l = pickup_latency(&store, samples, config, |_| {})
            .await
            .unwrap();
        println!(
            "run: enqueue {:.0}/s, end-to-end {:.0}/s, pick-up p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            t.enqueue_per_sec, t.run_per_sec, l.p50_ms, l.p99_ms, l.max_ms
        );
        enq.push(t.enqueue_per_sec);
        run.push(t.run_per_sec);
        p50.push(l.p50_ms);
        p99.push(l.p99_ms);
        drop(store);
        drop_schema(schema).await;
    }
    println!(
        "median: enqueue {:.0} tasks/s, end-to-end {:.0} tasks/s, pick-up p50 {:.2} ms, p99 {:.2} ms",
        median(enq),
        median(run),
        median(p50),
        median(p99)
    );
}
