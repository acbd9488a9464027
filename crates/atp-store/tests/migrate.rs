//! A database left by an older ATP is upgraded in place, data intact.

use atp_core::{Status, Store, StoreOptions, TaskRef};
use atp_store::conformance::{DAEMON_A, claim_one, enqueue, ident, register, task_type};

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
