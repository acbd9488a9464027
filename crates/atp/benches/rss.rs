//! Daemon memory: the resident set of a real `atp daemon` process while it
//! works through a queue of 1,000 and of 1,000,000 tasks. Each task sleeps
//! 0.1 s, so in both cases the daemon is busy the whole 10 s of sampling
//! (8 at a time, ~80 tasks/s) and only the queue's length differs. It should
//! not matter: a daemon holds only what it runs.
//!
//! ```text
//! cargo bench -p atp --bench rss -- [sqlite|postgres] [--noop] [--queued N ...]
//! ```
//! PostgreSQL: `ATP_BENCH_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), a fresh schema per size.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atp_core::{Handler, NewTask, Status, Store, StoreOptions, TaskIdentifier, TaskType, TypeName};
use atp_store::AnyStore;

const ATP: &str = env!("CARGO_BIN_EXE_atp");

/// A `/proc/PID/status` field in KiB: `VmRSS` (everything resident) or
/// `RssAnon` (the process's own memory, without pages of files it maps:
/// SQLite maps its database file, and those pages are the kernel's cache).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn pg_url() -> String {
    atp_store::testing::bench_database_url()
}

/// A fresh database and the environment that points a daemon at it.
async fn fresh(engine: &str, dir: &std::path::Path) -> (AnyStore, Vec<(String, String)>) {
    let options = StoreOptions {
        max_queue_size: 0,
        ..StoreOptions::default()
    };
    match engine {
        "sqlite" => {
            let url = format!("sqlite://{}", dir.join("rss.sqlite").display());
            let store = atp_store::open(&url, options).await.unwrap();
            (store, vec![("ATP_DATABASE_URL".into(), url)])
        }
        "postgres" => {
            let schema = format!("atp_rss_{}", atp_store::testing::random_suffix());
            let store =
                atp_store::postgres::PgStore::connect_with_schema(&pg_url(), &schema, options)
                    .await
                    .unwrap();
            (
                AnyStore::Postgres(store),
                vec![
                    ("ATP_DATABASE_URL".into(), pg_url()),
                    ("ATP_DATABASE_SCHEMA".into(), schema),
                ],
            )
        }
        other => panic!("unknown engine {other}"),
    }
}

/// After a bulk enqueue on PostgreSQL: statistics for the planner, and the
/// dirty pages written out, so the sampling measures the daemon and not the
/// checkpointer flushing the fill behind it.
async fn settle_postgres(env: &[(String, String)]) {
    let Some((_, schema)) = env.iter().find(|(k, _)| k == "ATP_DATABASE_SCHEMA") else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("ANALYZE \"{schema}\".atp_task"))
        .await
        .unwrap();
    client.batch_execute("CHECKPOINT").await.unwrap();
}

async fn drop_schema(env: &[(String, String)]) {
    if let Some((_, schema)) = env.iter().find(|(k, _)| k == "ATP_DATABASE_SCHEMA") {
        atp_store::testing::drop_schema(&pg_url(), schema).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let engine = args
        .iter()
        .find(|a| *a == "sqlite" || *a == "postgres")
        .cloned()
        .unwrap_or_else(|| "sqlite".into());
    let sizes: Vec<usize> = match args.iter().position(|a| a == "--queued") {
        Some(i) => args[i + 1..].iter().map_while(|a| a.parse().ok()).collect(),
        None => vec![1_000, 1_000_000],
    };
    // `--noop`: no-op tasks instead, drained as fast as the daemon can.
    let noop = args.iter().any(|a| a == "--noop");
    println!(
        "engine {engine}: daemon RSS while working (concurrency 8, {})",
        if noop {
            "no-op tasks, full speed"
        } else {
            "tasks of 0.1 s"
        }
    );
    for queued in sizes {
        let dir = tempfile::tempdir().unwrap();
        let (store, env) = fresh(&engine, dir.path()).await;
        let t = TypeName::new("rss").unwrap();
        store
            .task_type_upsert(&TaskType::new(
                t.clone(),
                Handler::new(if noop {
                    "builtin:noop"
                } else {
                    "builtin:sleep"
                })
                .unwrap(),
            ))
            .await
            .unwrap();
        let started = Instant::now();
        for chunk in 0..queued.div_ceil(1_000) {
            let batch = (chunk * 1_000..queued.min((chunk + 1) * 1_000))
                .map(|i| {
                    NewTask::new(t.clone(), TaskIdentifier::new(format!("q{i}")).unwrap())
                        .with_input(serde_json::json!({"seconds": 0.1}))
                })
                .collect();
            store.task_enqueue_many(batch).await.unwrap();
        }
        println!(
            "  queued {queued} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        settle_postgres(&env).await;
        let mut daemon = Command::new(ATP)
            .args(["daemon", "--concurrency", "8"])
            .envs(env.clone())
            .env("ATP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = daemon.id();
        let mut samples = Vec::new();
        let mut anon = Vec::new();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let (Some(all), Some(own)) = (status_kib(pid, "VmRSS"), status_kib(pid, "RssAnon")) {
                samples.push(all);
                anon.push(own);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let done = store.task_counts().await.unwrap().status(Status::Finished);
        let _ = daemon.kill();
        let _ = daemon.wait();
        samples.sort_unstable();
        anon.sort_unstable();
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "  {queued:>9} queued: RSS median {:.1} MiB, max {:.1} MiB; of it anonymous: median {:.1} MiB, max {:.1} MiB ({done} tasks finished in 10 s)",
            mib(samples[samples.len() / 2]),
            mib(*samples.last().unwrap()),
            mib(anon[anon.len() / 2]),
            mib(*anon.last().unwrap()),
        );
        drop(store);
        drop_schema(&env).await;
    }
}
