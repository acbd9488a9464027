//! A database left by an older ATP is upgraded in place, data intact.
//!
//! The old rows are written in plain SQL, as the older release wrote them:
//! this build's own writes need the newest schema (a type's `paused`
//! column, for one).

use atp_core::{ClaimParams, NewTask, Status, Store, StoreOptions, TaskFilter, TaskRef};
use atp_store::conformance::{
    DAEMON_A, claim_one, enqueue, every_second, fire, ident, occurrences, type_name,
};

/// Rows as older releases stored them, with the engine's time literal
/// (`time`): type `legacy`, its task `first` SCHEDULED (held by daemon 1)
/// and `second` ACCEPTED, and the queue counters that go with them.
fn old_rows(time: &str) -> String {
    format!(
        "INSERT INTO atp_task_type (name, handler, timeout_secs, retention_secs, max_starts, created_at, updated_at)
           VALUES ('legacy', 'builtin:noop', 3600.0, -1.0, 3, {time}, {time});
         INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at, enqueued_at, starts, lease, holder, input)
           SELECT id, 'first', 2, {time}, {time}, {time}, 0, 1, 1, 'null' FROM atp_task_type WHERE name = 'legacy';
         INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at, enqueued_at, input)
           SELECT id, 'second', 1, {time}, {time}, {time}, 'null' FROM atp_task_type WHERE name = 'legacy';
         UPDATE atp_queue_counter SET value = 2 WHERE name = 'in';
         UPDATE atp_queue_counter SET value = 1 WHERE name = 'out';"
    )
}

/// What an upgraded database holds and does, on any engine: the old rows
/// as they were, the newer tables, new work, and the type pauses of the
/// newest migration (old types run).
async fn assert_upgraded<S: Store>(new: &S, latest: u32) {
    assert_eq!(new.schema_version().await.unwrap(), latest);
    let t = type_name("legacy");
    let claimed = new
        .task_get(&TaskRef::Key(t.clone(), ident("first")))
        .await
        .unwrap();
    assert_eq!(claimed.status, Status::Scheduled);
    assert_eq!(new.queue_size().await.unwrap(), 1);
    // The tables of version 2 work on the upgraded database.
    assert!(new.daemon_list().await.unwrap().is_empty());

    let legacy = new.task_type_get(&t).await.unwrap();
    assert!(!legacy.paused, "a type from before pauses runs");
    enqueue(new, &t, "third").await;
    assert_eq!(new.queue_size().await.unwrap(), 2);
    assert!(new.task_type_set_paused(&t, true).await.unwrap().paused);
    let none = new
        .task_claim(&ClaimParams::new(DAEMON_A, 10))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    new.task_type_set_paused(&t, false).await.unwrap();

    // Old tasks were due when enqueued and have the default priority; a
    // new urgent task goes ahead of them, FIFO holds among them.
    let second = new
        .task_get(&TaskRef::Key(t.clone(), ident("second")))
        .await
        .unwrap();
    assert_eq!((second.due_at, second.priority), (second.enqueued_at, 0));
    assert_eq!(legacy.priority, 0);
    new.task_enqueue(NewTask::new(t.clone(), ident("urgent")).with_priority(5))
        .await
        .unwrap();
    assert_eq!(claim_one(new, DAEMON_A).await.identifier, ident("urgent"));
    assert_eq!(claim_one(new, DAEMON_A).await.identifier, ident("second"));

    // Schedules (SQLite 7, PostgreSQL 10): none before, and they work.
    assert!(new.schedule_list().await.unwrap().is_empty());
    let sch = new
        .schedule_upsert(&every_second("legacy-tick", &t))
        .await
        .unwrap();
    let at = occurrences(&sch, 1)[0];
    assert!(matches!(
        fire(new, &sch, at).await,
        atp_core::schedule::ScheduleFired::Enqueued(_)
    ));
    // CANCELLED (status 7) is allowed by the upgraded status constraint,
    // for the old held task and for a new queued one.
    let first = TaskRef::Key(t.clone(), ident("first"));
    assert_eq!(
        new.task_cancel(&first, None).await.unwrap().status,
        Status::Cancelled
    );
    let third = TaskRef::Key(t.clone(), ident("third"));
    assert_eq!(
        new.task_cancel(&third, Some("upgrade"))
            .await
            .unwrap()
            .status,
        Status::Cancelled
    );
    assert_eq!(
        new.queue_size().await.unwrap(),
        1,
        "the schedule's occurrence"
    );
    assert_eq!(
        new.task_counts().await.unwrap().status(Status::Cancelled),
        2
    );
}

/// The identifiers a prefix search finds, sorted.
async fn prefixed(s: &impl Store, prefix: &str) -> Vec<String> {
    let page = s
        .task_list(&TaskFilter {
            identifier_prefix: Some(prefix.to_owned()),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    let mut ids: Vec<String> = page
        .tasks
        .iter()
        .map(|t| t.identifier.to_string())
        .collect();
    ids.sort();
    ids
}

mod sqlite {
    use super::*;
    use atp_store::sqlite::{LATEST_VERSION, SqliteStore};

    /// The schema of the last release, before due times and priorities
    /// (migration 5).
    const PREVIOUS_RELEASE: u32 = 4;
    /// The schema before the identifier index (migration 4).
    const BEFORE_PREFIX_INDEX: u32 = 3;

    /// A file at `version` with [`old_rows`], then opened by this build.
    async fn upgraded_from(dir: &tempfile::TempDir, version: u32) -> SqliteStore {
        let path = dir.path().join("old.sqlite");
        let old = SqliteStore::open_file_at_version(&path, false, StoreOptions::default(), version)
            .await
            .unwrap();
        assert_eq!(old.schema_version().await.unwrap(), version);
        drop(old);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&old_rows("1000000")).unwrap();
        drop(conn);
        SqliteStore::open_file(&path, false, StoreOptions::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_version_1_database_is_upgraded_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let new = upgraded_from(&dir, 1).await;
        const { assert!(LATEST_VERSION > 1) };
        assert_upgraded(&new, LATEST_VERSION).await;
    }

    #[tokio::test]
    async fn the_previous_releases_database_is_upgraded_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let new = upgraded_from(&dir, PREVIOUS_RELEASE).await;
        const { assert!(LATEST_VERSION > PREVIOUS_RELEASE) };
        assert_upgraded(&new, LATEST_VERSION).await;
    }

    /// A schema from before the identifier index gains it, and a
    /// prefix search finds the tasks it held.
    #[tokio::test]
    async fn the_previous_release_s_database_gains_the_identifier_index() {
        let dir = tempfile::tempdir().unwrap();
        let new = upgraded_from(&dir, BEFORE_PREFIX_INDEX).await;
        assert_eq!(new.schema_version().await.unwrap(), LATEST_VERSION);
        assert_eq!(prefixed(&new, "fir").await, ["first"]);
        assert_eq!(prefixed(&new, "s").await, ["second"]);
        drop(new);
        let conn = rusqlite::Connection::open(dir.path().join("old.sqlite")).unwrap();
        let indexed: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'atp_task_identifier'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexed, 1);
    }

    /// The status constraint edited in place (migration 6) allows 7 on
    /// every connection, including one opened before the upgrade (another
    /// process), still refuses 8, and the file passes its integrity check.
    #[tokio::test]
    async fn the_upgraded_status_check_allows_cancelled_on_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        drop(
            SqliteStore::open_file_at_version(&path, false, StoreOptions::default(), 4)
                .await
                .unwrap(),
        );
        let before = rusqlite::Connection::open(&path).unwrap();
        before.execute_batch(&old_rows("1000000")).unwrap();
        let refused = before.execute(
            "UPDATE atp_task SET status = 7 WHERE identifier = 'second'",
            [],
        );
        assert!(refused.is_err(), "version 4 refuses 7");
        let new = SqliteStore::open_file(&path, false, StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(new.schema_version().await.unwrap(), LATEST_VERSION);
        before
            .execute(
                "UPDATE atp_task SET status = 7 WHERE identifier = 'second'",
                [],
            )
            .expect("a connection opened before the upgrade sees the new constraint");
        let err = before
            .execute(
                "UPDATE atp_task SET status = 8 WHERE identifier = 'second'",
                [],
            )
            .unwrap_err();
        assert!(err.to_string().contains("CHECK"), "{err}");
        let check: String = before
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let sql: String = before
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'atp_task'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(sql.contains("CHECK (status BETWEEN 1 AND 7)"), "{sql}");
        // Foreign keys and the log survived (no rebuild).
        let logged = new
            .task_log(&TaskRef::Key(type_name("legacy"), ident("first")))
            .await
            .unwrap();
        assert!(logged.is_empty(), "old rows had no log: {logged:?}");
    }

    #[tokio::test]
    async fn a_database_newer_than_this_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.sqlite");
        drop(
            SqliteStore::open_file(&path, false, StoreOptions::default())
                .await
                .unwrap(),
        );
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = SqliteStore::open_file(&path, false, StoreOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}

mod postgres {
    use super::*;
    use atp_store::postgres::{LATEST_VERSION, PgStore};
    use atp_store::testing::PgDb;

    /// The schema of the last release, before due times and priorities
    /// (migration 8).
    const PREVIOUS_RELEASE: u32 = 7;
    /// The schema before the identifier index (migration 7).
    const BEFORE_PREFIX_INDEX: u32 = 6;

    /// A schema of its own at `version`, next to the test's `PgDb` (which
    /// supplies the server), with [`old_rows`], then opened by this build.
    async fn upgraded_from(db: &PgDb, schema: &str, version: u32) -> PgStore {
        let old =
            PgStore::connect_at_version(db.url(), Some(schema), StoreOptions::default(), version)
                .await
                .unwrap();
        assert_eq!(old.schema_version().await.unwrap(), version);
        drop(old);
        let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "SET search_path = \"{schema}\"; {}",
                old_rows("now()")
            ))
            .await
            .unwrap();
        PgStore::connect_with_schema(db.url(), schema, StoreOptions::default())
            .await
            .unwrap()
    }

    async fn drop_schema(db: &PgDb, schema: &str) {
        atp_store::testing::drop_schema(db.url(), schema).await;
    }

    #[tokio::test]
    async fn a_version_1_database_is_upgraded_with_its_data() {
        let Some(db) = PgDb::new().await else { return };
        let schema = format!("{}_old", db.schema());
        let new = upgraded_from(&db, &schema, 1).await;
        const { assert!(LATEST_VERSION > 1) };
        assert_upgraded(&new, LATEST_VERSION).await;
        drop(new);
        drop_schema(&db, &schema).await;
    }

    #[tokio::test]
    async fn the_previous_releases_database_is_upgraded_with_its_data() {
        let Some(db) = PgDb::new().await else { return };
        let schema = format!("{}_prev", db.schema());
        let new = upgraded_from(&db, &schema, PREVIOUS_RELEASE).await;
        const { assert!(LATEST_VERSION > PREVIOUS_RELEASE) };
        assert_upgraded(&new, LATEST_VERSION).await;
        drop(new);
        drop_schema(&db, &schema).await;
    }

    /// A schema from before the identifier index gains it, and a
    /// prefix search finds the tasks it held.
    #[tokio::test]
    async fn the_previous_release_s_database_gains_the_identifier_index() {
        let Some(db) = PgDb::new().await else { return };
        let schema = format!("{}_release", db.schema());
        let new = upgraded_from(&db, &schema, BEFORE_PREFIX_INDEX).await;
        assert_eq!(new.schema_version().await.unwrap(), LATEST_VERSION);
        assert_eq!(prefixed(&new, "fir").await, ["first"]);
        assert_eq!(prefixed(&new, "s").await, ["second"]);
        let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let indexed: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'atp_task_identifier'",
                &[&schema],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(indexed, 1);
        drop(new);
        drop_schema(&db, &schema).await;
    }

    #[tokio::test]
    async fn a_database_newer_than_this_build_is_refused() {
        let Some(db) = PgDb::new().await else { return };
        let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let future = i32::try_from(LATEST_VERSION + 1).unwrap();
        client
            .execute(
                &format!(
                    "INSERT INTO \"{}\".atp_schema_version (version) VALUES ($1)",
                    db.schema()
                ),
                &[&future],
            )
            .await
            .unwrap();
        let err = PgStore::connect_with_schema(db.url(), db.schema(), StoreOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
