//! A database left by an older ATP is upgraded in place, data intact.

use atp_core::{Status, Store, StoreOptions, TaskFilter, TaskRef};
use atp_store::conformance::{DAEMON_A, claim_one, enqueue, ident, register, task_type};

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

    #[tokio::test]
    async fn a_version_1_database_is_upgraded_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        let old = SqliteStore::open_file_at_version(&path, false, StoreOptions::default(), 1)
            .await
            .unwrap();
        assert_eq!(old.schema_version().await.unwrap(), 1);
        let t = register(&old, task_type("legacy")).await;
        enqueue(&old, &t, "first").await;
        enqueue(&old, &t, "second").await;
        claim_one(&old, DAEMON_A).await;
        drop(old);

        let new = SqliteStore::open_file(&path, false, StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(new.schema_version().await.unwrap(), LATEST_VERSION);
        const { assert!(LATEST_VERSION > 1) };
        let claimed = new
            .task_get(&TaskRef::Key(t.clone(), ident("first")))
            .await
            .unwrap();
        assert_eq!(claimed.status, Status::Scheduled);
        assert_eq!(new.queue_size().await.unwrap(), 1);
        // The tables of version 2 work on the upgraded file.
        assert!(new.daemon_list().await.unwrap().is_empty());
    }

    /// The previous release's schema (version 2) gains the identifier
    /// index, and a prefix search finds the tasks it held.
    #[tokio::test]
    async fn the_previous_release_s_database_gains_the_identifier_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.sqlite");
        let old = SqliteStore::open_file_at_version(&path, false, StoreOptions::default(), 2)
            .await
            .unwrap();
        let t = register(&old, task_type("legacy")).await;
        for id in ["order-1", "order-2", "invoice-1"] {
            enqueue(&old, &t, id).await;
        }
        drop(old);
        let new = SqliteStore::open_file(&path, false, StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(new.schema_version().await.unwrap(), LATEST_VERSION);
        assert_eq!(prefixed(&new, "order-").await, ["order-1", "order-2"]);
        drop(new);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let indexed: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'atp_task_identifier'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexed, 1);
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

    /// A handle on a schema of its own, at `version`, next to the test's
    /// `PgDb` (which supplies the server).
    async fn at_version(db: &PgDb, schema: &str, version: u32) -> PgStore {
        PgStore::connect_at_version(db.url(), Some(schema), StoreOptions::default(), version)
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
        let old = at_version(&db, &schema, 1).await;
        assert_eq!(old.schema_version().await.unwrap(), 1);
        let t = register(&old, task_type("legacy")).await;
        drop(old);
        // Rows as version 1 stored them: this build's enqueue needs
        // version 3's function, so they are written in plain SQL.
        let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "SET search_path = \"{schema}\";
                 INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at, enqueued_at, starts, lease, holder, input)
                   SELECT id, 'first', 2, now(), now(), now(), 0, 1, 1, 'null' FROM atp_task_type WHERE name = 'legacy';
                 INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at, enqueued_at, input)
                   SELECT id, 'second', 1, now(), now(), now(), 'null' FROM atp_task_type WHERE name = 'legacy';
                 UPDATE atp_queue_counter SET value = 2 WHERE name = 'in';
                 UPDATE atp_queue_counter SET value = 1 WHERE name = 'out';"
            ))
            .await
            .unwrap();

        let new = PgStore::connect_with_schema(db.url(), &schema, StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(new.schema_version().await.unwrap(), LATEST_VERSION);
        const { assert!(LATEST_VERSION > 1) };
        let claimed = new
            .task_get(&TaskRef::Key(t.clone(), ident("first")))
            .await
            .unwrap();
        assert_eq!(claimed.status, Status::Scheduled);
        assert_eq!(new.queue_size().await.unwrap(), 1);
        assert!(new.daemon_list().await.unwrap().is_empty());
        // The upgraded schema takes new work.
        enqueue(&new, &t, "third").await;
        assert_eq!(new.queue_size().await.unwrap(), 2);
        drop(new);
        drop_schema(&db, &schema).await;
    }

    /// The previous release's schema (version 5) gains the identifier
    /// index, and a prefix search finds the tasks it held.
    #[tokio::test]
    async fn the_previous_release_s_database_gains_the_identifier_index() {
        let Some(db) = PgDb::new().await else { return };
        let schema = format!("{}_release", db.schema());
        let old = at_version(&db, &schema, 5).await;
        let t = register(&old, task_type("legacy")).await;
        for id in ["order-1", "order-2", "invoice-1"] {
            enqueue(&old, &t, id).await;
        }
        drop(old);
        let new = PgStore::connect_with_schema(db.url(), &schema, StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(new.schema_version().await.unwrap(), LATEST_VERSION);
        assert_eq!(prefixed(&new, "order-").await, ["order-1", "order-2"]);
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
