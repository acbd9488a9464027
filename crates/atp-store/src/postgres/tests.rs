//! Unit tests of the PostgreSQL engine's own plumbing (connections,
//! retries, migrations); the behaviour shared with SQLite is the contract
//! suite's.

use super::*;
use crate::testing::{PgDb, TestDb};

#[tokio::test]
async fn migrating_twice_or_at_once_is_harmless() {
    let Some(db) = PgDb::new().await else {
        return;
    };
    assert_eq!(db.store().schema_version().await.unwrap(), LATEST_VERSION);
    let again = db.open(StoreOptions::default()).await;
    assert_eq!(again.schema_version().await.unwrap(), LATEST_VERSION);
    let raw = db.raw().await;
    let rows: i64 = raw
        .query_one("SELECT count(*) FROM atp_schema_version", &[])
        .await
        .unwrap()
        .get(0);
    let migrations = crate::migrations::POSTGRES.len() as i64;
    assert_eq!(rows, migrations, "each migration once");

    // Four processes opening one fresh schema at the same moment.
    let fresh = format!("atp_unit_{}", crate::testing::random_suffix());
    let url = db.url().to_owned();
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let (url, fresh) = (url.clone(), fresh.clone());
            tokio::spawn(async move {
                PgStore::connect_with_schema(&url, &fresh, StoreOptions::default()).await
            })
        })
        .collect();
    for handle in opening {
        let store = handle.await.unwrap().expect("a racing connect succeeds");
        assert_eq!(store.schema_version().await.unwrap(), LATEST_VERSION);
    }
    raw.batch_execute(&format!("DROP SCHEMA \"{fresh}\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_old_schema_is_upgraded_and_a_newer_one_refused() {
    let Some(db) = PgDb::new().await else {
        return;
    };
    let old_name = format!("atp_unit_{}", crate::testing::random_suffix());
    let old = PgStore::connect_at_version(db.url(), Some(&old_name), StoreOptions::default(), 1)
        .await
        .unwrap();
    assert_eq!(old.schema_version().await.unwrap(), 1);
    drop(old);
    let new = PgStore::connect_with_schema(db.url(), &old_name, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(new.schema_version().await.unwrap(), LATEST_VERSION);
    assert!(new.daemon_list().await.unwrap().is_empty());

    let raw = db.raw().await;
    raw.execute(
        "INSERT INTO atp_schema_version (version) VALUES ($1)",
        &[&(LATEST_VERSION as i32 + 1)],
    )
    .await
    .unwrap();
    let err = PgStore::connect_with_schema(db.url(), db.schema(), StoreOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
    raw.batch_execute(&format!("DROP SCHEMA \"{old_name}\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Port 1 on the loopback refuses connections at once.
    let err = PgStore::connect("postgres://postgres@127.0.0.1:1/x", StoreOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = PgStore::connect("mysql://nope", StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = PgStore::connect_with_schema(
        "postgres://postgres@127.0.0.1:1/x",
        "bad\nname",
        StoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[tokio::test]
async fn deadlocks_are_retried_and_other_errors_are_not() {
    let Some(db) = PgDb::new().await else {
        return;
    };
    let (a, b) = (db.raw().await, db.raw().await);
    a.batch_execute("BEGIN; UPDATE atp_queue_counter SET value = value WHERE name = 'in'")
        .await
        .unwrap();
    b.batch_execute("BEGIN; UPDATE atp_queue_counter SET value = value WHERE name = 'out'")
        .await
        .unwrap();
    let cross = "UPDATE atp_queue_counter SET value = value WHERE name = ";
    let (to_out, to_in) = (format!("{cross}'out'"), format!("{cross}'in'"));
    let (ra, rb) = tokio::join!(a.batch_execute(&to_out), b.batch_execute(&to_in));
    let failed = ra
        .err()
        .or(rb.err())
        .expect("one side is the deadlock victim");
    let mapped = pg("testing")(failed);
    assert!(Retries::new().again(&mapped).await, "{mapped:?}");

    // End both, whichever won, before anything else touches the rows.
    a.batch_execute("ROLLBACK").await.unwrap();
    b.batch_execute("ROLLBACK").await.unwrap();
    let unique = a
        .batch_execute("INSERT INTO atp_queue_counter VALUES ('in', 0)")
        .await
        .unwrap_err();
    let mapped = pg("testing")(unique);
    assert!(matches!(mapped, Error::Database { .. }));
    assert!(!Retries::new().again(&mapped).await);
}

/// ATP's statements are never JIT-compiled. The dead daemons' reap (every
/// heartbeat of every daemon) is answered by a bitmap scan only, which the
/// session disfavours, so its estimated cost is above every JIT threshold:
/// with JIT on, each run compiled it (0.1–1 s of CPU). Where the server has
/// no JIT (no LLVM), this holds anyway.
#[tokio::test]
async fn no_statement_of_atps_is_jit_compiled() {
    let Some(db) = PgDb::new().await else {
        return;
    };
    let client = db.store().client().await.unwrap();
    let plan: Vec<String> = client
        .query(
            &format!("EXPLAIN (ANALYZE) {}", reap::dead_daemons_sql()),
            &[&15.0f64, &3.0f64, &None::<i64>],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("atp_daemon"), "{plan}");
    assert!(!plan.contains("JIT:"), "{plan}");
}

/// The 'in' shard a raw session's fast-path enqueues count on, and the
/// counter row values by shard.
async fn shard_values(raw: &tokio_postgres::Client) -> Vec<i64> {
    raw.query(
        "SELECT value FROM atp_queue_counter WHERE name = 'in' ORDER BY shard",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// An enqueue far from the limit counts on its connection's own shard, so
/// that producers on other connections do not wait for its row lock; a
/// big batch or an exact count goes to shard 0 after locking every shard;
/// near the limit the fast path asks to be run again exact.
#[tokio::test]
async fn enqueues_count_on_their_connections_shard_unless_exact() {
    let Some(db) = PgDb::new().await else {
        return;
    };
    let raw = db.raw().await;
    let pid: i32 = raw
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let mine = usize::try_from(pid % 16).unwrap();
    assert_eq!(shard_values(&raw).await, vec![0; 16], "16 shards");
    let count = "SELECT atp_count_in($1, $2, $3)";
    let fast_and_exact: [(i64, i64, bool, usize); 4] = [
        (1, 100_000, false, mine), // far from the limit: its own shard
        (1, 0, false, mine),       // no limit: its own shard
        (1, 100_000, true, 0),     // asked to be exact
        (101, 100_000, false, 0),  // a batch over the fast path's 100
    ];
    let mut expected = vec![0i64; 16];
    for (added, limit, exact, shard) in fast_and_exact {
        raw.query_one(count, &[&added, &limit, &exact])
            .await
            .unwrap();
        expected[shard] += added;
        assert_eq!(
            shard_values(&raw).await,
            expected,
            "{added} {limit} {exact}"
        );
    }
    // Within 1,500 of the limit (105 with this one, a limit of 1,604): the fast
    // path refuses (run again exact) and counts nothing; exact, it goes in.
    let e = raw
        .query_one(count, &[&1i64, &1_604i64, &false])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("AQ002"), "{e}");
    assert_eq!(shard_values(&raw).await, expected);
    raw.query_one(count, &[&1i64, &1_604i64, &true])
        .await
        .unwrap();
    expected[0] += 1;
    assert_eq!(shard_values(&raw).await, expected);
}

/// A fast-path enqueue that waited for its shard while another enqueue
/// brought the queue within 1,500 of its limit raises AQ002 (run again on
/// the exact path) once it holds the shard, and counts nothing.
#[tokio::test]
async fn a_fast_enqueue_that_finds_the_queue_filled_meanwhile_asks_for_the_exact_path() {
    let Some(db) = PgDb::new().await else {
        return;
    };
    // `watcher` reads pg_stat_activity outside any transaction (inside
    // one, PostgreSQL keeps showing the first look).
    let (producer, other, watcher) = (db.raw().await, db.raw().await, db.raw().await);
    let pid: i32 = producer
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let shard = i16::try_from(pid % 16).unwrap();
    other.execute("BEGIN", &[]).await.unwrap();
    other
        .execute(
            "UPDATE atp_queue_counter SET value = value + 200 WHERE name = 'in' AND shard = $1",
            &[&shard],
        )
        .await
        .unwrap();
    producer.batch_execute("BEGIN").await.unwrap();
    let count = producer.query_one(
        "SELECT atp_count_in($1, $2, $3)",
        &[&1i64, &1_700i64, &false],
    );
    // The producer (an empty queue: the fast path) waits for the shard.
    let committed = async {
        crate::testing::eventually(std::time::Duration::from_secs(10), "the wait", || async {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
                    &[&pid],
                )
                .await
                .unwrap()
                .get(0);
            (waiting == 1).then_some(())
        })
        .await;
        other.execute("COMMIT", &[]).await.unwrap();
    };
    let (counted, ()) = tokio::join!(count, committed);
    let e = counted.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("AQ002"), "{e}");
    producer.batch_execute("ROLLBACK").await.unwrap();
    let total: i64 = producer
        .query_one(
            "SELECT sum(value)::int8 FROM atp_queue_counter WHERE name = 'in'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 200, "only the other session's count");
}
