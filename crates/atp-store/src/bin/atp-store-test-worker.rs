//! A test helper, not a product: a second OS process on a test's database.
//!
//! `atp-store-test-worker open` opens (and so migrates) the database and
//! exits. `atp-store-test-worker drain HOLDER BATCH` claims, starts and
//! finishes tasks until the queue stays empty, printing each claimed task id
//! on its own line. The database comes from `ATP_DATABASE_URL` and, for a
//! PostgreSQL test schema, `ATP_DATABASE_SCHEMA`.

use std::io::Write;
use std::time::Duration;

use atp_core::{ClaimParams, DaemonId, StatusChange, Store, StoreOptions};
use atp_store::AnyStore;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("atp-store-test-worker: {e}");
        std::process::exit(1);
    }
}

async fn open() -> Result<AnyStore, Box<dyn std::error::Error>> {
    let url = std::env::var("ATP_DATABASE_URL")?;
    let options = StoreOptions::default();
    Ok(match std::env::var("ATP_DATABASE_SCHEMA") {
        Ok(schema) => AnyStore::Postgres(
            atp_store::postgres::PgStore::connect_with_schema(&url, &schema, options).await?,
        ),
        Err(_) => atp_store::open(&url, options).await?,
    })
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("open") => {
            let store = open().await?;
            println!("{}", store.schema_version().await?);
            Ok(())
        }
        Some("drain") => {
            let holder = DaemonId(args.get(1).ok_or("HOLDER missing")?.parse()?);
            let batch: u32 = args.get(2).ok_or("BATCH missing")?.parse()?;
            drain(&open().await?, holder, batch).await
        }
        _ => Err("usage: atp-store-test-worker open | drain HOLDER BATCH".into()),
    }
}

async fn drain(
    store: &AnyStore,
    holder: DaemonId,
    batch: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut out = std::io::stdout().lock();
    let mut idle_rounds = 0;
    while idle_rounds < 20 {
        let claimed = store.task_claim(&ClaimParams::new(holder, batch)).await?;
        if claimed.is_empty() {
            idle_rounds += 1;
            // Woken by this process's enqueues; other processes' are seen
            // when the wait times out (SQLite has no cross-process signal).
            store.wait_for_tasks(Duration::from_millis(10)).await;
            continue;
        }
        idle_rounds = 0;
        for c in &claimed {
            writeln!(out, "{}", c.attempt.task.0)?;
        }
        let attempts: Vec<_> = claimed.iter().map(|c| c.attempt).collect();
        for started in store.task_start_many(&attempts).await? {
            started?;
        }
        let done: Vec<_> = attempts
            .iter()
            .map(|a| StatusChange::finish(*a, "done"))
            .collect();
        for result in store.task_set_status_many(&done).await? {
            result?;
        }
    }
    out.flush()?;
    Ok(())
}
