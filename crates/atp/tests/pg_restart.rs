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

/// A private cluster, or `None` (test skipped) when none can be made and
/// PostgreSQL is not required.
fn private_cluster() -> Option<Cluster> {
    match Cluster::start_private() {
        Ok(c) => Some(c),
        Err(why) if !pg_server::required() => {
            eprintln!("NOTICE: PostgreSQL restart test skipped: {why}");
            None
        }
        Err(why) => panic!("PostgreSQL is required but a private cluster failed: {why}"),
    }
}

/// A private cluster, its URL and a store on it (see [`private_cluster`]).
async fn private_store() -> Option<(Cluster, String, PgStore)> {
    let cluster = private_cluster()?;
    let url = cluster.url();
    let store = PgStore::connect(&url, StoreOptions::default())
        .await
        .unwrap();
    Some((cluster, url, store))
}

/// An `atp daemon` on `url` with `extra` flags, its log followed.
fn daemon(url: &str, extra: &[&str]) -> common::DaemonProcess {
    let mut child = Command::new(ATP)
        .arg("daemon")
        .args(extra)
        .env("ATP_DATABASE_URL", url)
        .env_remove("ATP_DATABASE_SCHEMA")
        .env("ATP_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Lines::follow(child.stderr.take().unwrap());
    common::DaemonProcess {
        child,
        log: Some(log),
    }
}

/// After an 8 s outage, an idle daemon with the default settings starts a
/// task enqueued right after the server is back within 1 s (issue 12:
/// within 100 ms on a quiet machine; the bound leaves room for a loaded
/// one). With the old back-off (doubling to 5 s) the daemon slept through
/// the first seconds after the return (its next try came 10 s after the
/// first failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_daemon_claims_at_once_after_a_postgres_restart() {
    let Some((cluster, url, store)) = private_store().await else {
        return;
    };
    let t = TaskType::new(type_name("probe"), Handler::new("builtin:sleep").unwrap());
    store.task_type_upsert(&t).await.unwrap();
    let probe = |i: usize| {
        NewTask::new(t.name.clone(), ident(&format!("p{i}"))).with_input(json!({"seconds": 0}))
    };
    let mut d = daemon(&url, &["--concurrency", "2"]);
    store.task_enqueue(probe(0)).await.unwrap();
    eventually(
        Duration::from_secs(30),
        "the first probe to finish",
        || async { (finished(&store).await.unwrap_or(0) == 1).then_some(()) },
    )
    .await;

    cluster.stop().unwrap();
    d.log
        .as_mut()
        .unwrap()
        .wait_for("failed", Duration::from_secs(30));
    // The outage's length is the scenario (long enough for a doubling
    // back-off to reach seconds), not a wait for something to happen.
    tokio::time::sleep(Duration::from_secs(8)).await;
    cluster.start().unwrap();
    let enqueued = eventually(Duration::from_secs(30), "an enqueue to succeed", || async {
        store.task_enqueue(probe(1)).await.ok()
    })
    .await;
    let back = std::time::Instant::now();
    let ran = eventually(
        Duration::from_secs(30),
        "the second probe to run",
        || async {
            let task = store.task_get(&enqueued.id.into()).await.ok()?;
            (task.status != Status::Accepted).then_some(back.elapsed())
        },
    )
    .await;
    eprintln!("started {ran:?} after the enqueue that followed the restart");
    assert!(
        ran < Duration::from_secs(1),
        "an idle daemon took {ran:?} to claim after the server came back"
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(30)).await, 0);
}

/// Counts by status, or `None` while the server is away.
async fn finished(store: &PgStore) -> Option<u64> {
    Some(store.task_counts().await.ok()?.status(Status::Finished))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_ride_out_a_postgres_restart() {
    let Some((cluster, url, store)) = private_store().await else {
        return;
    };
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
            daemon(
                &url,
                &[
                    "--concurrency",
                    "4",
                    "--poll-interval-ms",
                    "20",
                    "--heartbeat-secs",
                    "0.3",
                    "--dead-after-secs",
                    "5",
                    "--cleanup-interval-secs",
                    "0.5",
                ],
            )
        })
        .collect();

    eventually(
        Duration::from_secs(60),
        "the daemons to start working",
        || async { (finished(&store).await.unwrap_or(0) >= 10).then_some(()) },
    )
    .await;
    cluster.stop().unwrap();
    // Every daemon notices (its first failure is logged), then the outage
    // lasts 4 s more: past the 3 s after which a daemon shown gone is dead,
    // short of the 5 s after which any is. The restart frees every
    // liveness lock at once, so a reaper that trusted a free lock then
    // would take the other, live daemon for dead. The outage's length is
    // the scenario, not a wait for something to happen.
    for w in &mut daemons {
        let log = w.log.as_mut().unwrap();
        log.wait_for("failed", Duration::from_secs(30));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
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
        assert!(
            !log.iter().any(|l| l.message.starts_with("Rescued")),
            "no live daemon is taken for dead after the restart: {log:?}"
        );
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
