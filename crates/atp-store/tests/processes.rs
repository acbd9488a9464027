//! Several OS processes on one database, on each engine.

use std::collections::HashMap;
use std::process::{Command, Stdio};

use atp_core::{NewTask, Status, Store, StoreOptions};
use atp_store::conformance::{ident, register, task_type};
use atp_store::testing::TestDb;

const WORKER: &str = env!("CARGO_BIN_EXE_atp-store-test-worker");

fn worker(db: &impl TestDb, args: &[&str]) -> std::process::Child {
    Command::new(WORKER)
        .args(args)
        .envs(db.child_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the test worker")
}

fn finish(child: std::process::Child) -> String {
    let out = child.wait_with_output().expect("waiting for the worker");
    assert!(
        out.status.success(),
        "worker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Two processes drain 10,000 tasks: each is claimed exactly once.
async fn two_processes_claim_each_task_exactly_once(db: impl TestDb) {
    let s = db
        .open(StoreOptions {
            max_queue_size: 0,
            ..StoreOptions::default()
        })
        .await;
    let t = register(&s, task_type("drain")).await;
    for chunk in 0..10 {
        let batch = (0..1_000)
            .map(|i| NewTask::new(t.clone(), ident(&format!("t{chunk}-{i}"))))
            .collect();
        s.task_enqueue_many(batch).await.unwrap();
    }
    let children = [
        worker(&db, &["drain", "1", "7"]),
        worker(&db, &["drain", "2", "16"]),
    ];
    let mut seen: HashMap<i64, u32> = HashMap::new();
    let mut per_process = Vec::new();
    for child in children {
        let out = finish(child);
        let ids: Vec<i64> = out.lines().map(|l| l.parse().unwrap()).collect();
        per_process.push(ids.len());
        for id in ids {
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 10_000, "every task claimed");
    assert!(seen.values().all(|n| *n == 1), "a task was claimed twice");
    assert!(
        per_process.iter().all(|n| *n > 0),
        "both processes worked: {per_process:?}"
    );
    let counts = s.task_counts().await.unwrap();
    assert_eq!(counts.status(Status::Finished), 10_000);
    assert_eq!(s.queue_size().await.unwrap(), 0);
}

/// Four processes open (and migrate) a fresh database at the same moment.
async fn processes_opening_a_fresh_database_at_once_all_succeed(
    env: Vec<(String, String)>,
    latest: u32,
) {
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(WORKER)
                .arg("open")
                .envs(env.clone())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let version = finish(child);
        assert_eq!(version.trim(), latest.to_string());
    }
}

mod sqlite {

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_claim_each_task_exactly_once() {
        super::two_processes_claim_each_task_exactly_once(
            atp_store::testing::SqliteDb::new().await,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_opening_a_fresh_database_at_once_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("fresh.sqlite").display());
        super::processes_opening_a_fresh_database_at_once_all_succeed(
            vec![("ATP_DATABASE_URL".into(), url)],
            atp_store::sqlite::LATEST_VERSION,
        )
        .await;
    }
}

mod postgres {
    use atp_store::testing::PgDb;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_claim_each_task_exactly_once() {
        let Some(db) = PgDb::new().await else { return };
        super::two_processes_claim_each_task_exactly_once(db).await;
    }

    /// The schema does not exist yet: the four processes race to create it
    /// and to migrate it. The test's own `PgDb` (another schema) only
    /// supplies the server and drops the raced schema afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_opening_a_fresh_database_at_once_all_succeed() {
        let Some(db) = PgDb::new().await else { return };
        let fresh = format!("{}_fresh", db.schema());
        let env = vec![
            ("ATP_DATABASE_URL".to_owned(), db.url().to_owned()),
            ("ATP_DATABASE_SCHEMA".to_owned(), fresh.clone()),
        ];
        super::processes_opening_a_fresh_database_at_once_all_succeed(
            env,
            atp_store::postgres::LATEST_VERSION,
        )
        .await;
        atp_store::testing::drop_schema(db.url(), &fresh).await;
    }
}
