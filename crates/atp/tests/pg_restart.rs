//! PostgreSQL stopped and restarted under running daemons: every task
//! still finishes, and none ran twice at once.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use atp_core::{Handler, NewTask, Status, Store, StoreOptions, TaskType};
use atp_store::conformance::{ident, type_name};
use atp_store::postgres::PgStore;
use atp_store::testing::eventually;
use atp_store::testing::pg_server::{self, Cluster};
use serde_json::json;

use common::{ATP, Lines, all_tasks};

/// Counts by status, or `None` while the server is away.
async fn finished(store: &PgStore) -> Option<u64> {
    Some(store.task_counts().await.ok()?.status(Status::Finished))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_ride_out_a_postgres_restart() {
    let cluster = match Cluster::start_private() {
        Ok(c) => c,
        Err(why) if !pg_server::required() => {
            eprintln!("NOTICE: PostgreSQL restart test skipped: {why}");
            return;
        }
        Err(why) => panic!("PostgreSQL is required but a private cluster failed: {why}"),
    };
    let url = cluster.url();
    let store = PgStore::connect(&url, StoreOptions::default())
        .await
        .unwrap();
    let mut t = TaskType::new(type_name("restart"), Handler::new("builtin:sleep").unwrap());
    t.timeout_secs = 120.0;
    store.task_type_upsert(&t).await.unwrap();
    const N: usize = 80;
    let batch = (0..N)
        .map(|i| {
            NewTask::new(t.name.clone(), ident(&format!("r{i:03}")))
                .with_input(json!({"seconds": 0.2}))
        })
        .collect();
    store.task_enqueue_many(batch).await.unwrap();

    let mut daemons: Vec<_> = (0..2)
        .map(|_| {
            Command::new(ATP)
                .args(["daemon", "--concurrency", "4", "--poll-interval-ms", "20"])
                .args([
                    "--heartbeat-secs",
                    "0.3",
                    "--dead-after-secs",
                    "5",
                    "--cleanup-interval-secs",
                    "0.5",
                ])
                .env("ATP_DATABASE_URL", &url)
                .env_remove("ATP_DATABASE_SCHEMA")
                .env("ATP_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .map(|mut child| {
            let log = Lines::follow(child.stderr.take().unwrap());
            common::DaemonProcess {
                child,
                log: Some(log),
            }
        })
        .collect();

    eventually(
        Duration::from_secs(60),
        "the daemons to start working",
        || async { (finished(&store).await.unwrap_or(0) >= 10).then_some(()) },
    )
    .await;
    cluster.stop().unwrap();
    // The outage lasts until every daemon has retried a failed write six
    // times (its back-off, 50 ms doubling, is logged with each failure):
    // over 1.5 s, five heartbeat intervals, without a sleep.
    for w in &mut daemons {
        let log = w.log.as_mut().unwrap();
        log.wait_for("retry_in=1.6s", Duration::from_secs(30));
    }
    cluster.start().unwrap();

    eventually(
        Duration::from_secs(120),
        "every task to finish after the restart",
        || async {
            // A FAILED task can never finish: stop at once and show why.
            let failed = atp_core::TaskFilter {
                status: Some(Status::Failed),
                limit: 1,
                ..atp_core::TaskFilter::default()
            };
            if let Some(t) = store
                .task_list(&failed)
                .await
                .ok()
                .and_then(|page| page.tasks.into_iter().next())
            {
                let log = store.task_log(&t.id.into()).await.unwrap();
                panic!("a task failed: {log:#?}");
            }
            (finished(&store).await.unwrap_or(0) >= N as u64).then_some(())
        },
    )
    .await;
    for task in all_tasks(&store).await {
        let log = store.task_log(&task.id.into()).await.unwrap();
        let finishes = log.iter().filter(|l| l.status == Status::Finished).count();
        assert_eq!(finishes, 1, "finished exactly once: {log:?}");
        // A task that ran more than once was handed back or rescued in
        // between: never two attempts at once.
        let runs = log.iter().filter(|l| l.status == Status::Running).count();
        let returns = log.iter().filter(|l| l.status == Status::Accepted).count();
        assert!(
            runs <= returns,
            "each extra run follows a return to the queue: {log:?}"
        );
    }
    for mut w in daemons {
        w.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(
            w.wait_exit(Duration::from_secs(30)).await,
            0,
            "the daemon exits cleanly"
        );
    }
}
