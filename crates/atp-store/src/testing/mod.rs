//! A fresh database per test, for this crate's contract suite and for the
//! crates above it.
//!
//! - SQLite: a new file in a new temporary folder (a shared file would make
//!   parallel tests meet `SQLITE_BUSY` and each other's rows).
//! - PostgreSQL: a new schema on the server named by `ATP_TEST_DATABASE_URL`,
//!   or on a throwaway cluster started with `initdb`/`pg_ctl` (see
//!   [`pg_server`]). When neither is possible the PostgreSQL tests print a
//!   notice and pass without running, unless `ATP_TEST_REQUIRE_POSTGRES=1`
//!   (set by `.ci/run`), which makes that a failure.

pub mod pg_server;
mod postgres;

pub use postgres::{PgDb, postgres_db};

use std::future::Future;

use atp_core::{Store, StoreOptions};

use crate::sqlite::SqliteStore;

/// One test's database and a way to open more handles on it.
pub trait TestDb: Send + Sync + 'static {
    /// The engine's store type.
    type Store: Store + Clone;

    /// The handle opened with default options.
    fn store(&self) -> &Self::Store;

    /// Another handle on the same database with other options.
    fn open(&self, options: StoreOptions) -> impl Future<Output = Self::Store> + Send;

    /// Environment that lets another process open this database:
    /// `ATP_DATABASE_URL` and, for PostgreSQL, `ATP_DATABASE_SCHEMA`.
    fn child_env(&self) -> Vec<(String, String)>;
}

/// A SQLite file in a temporary folder that is removed with the value.
pub struct SqliteDb {
    store: SqliteStore,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SqliteDb {
    /// A fresh database file.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("creating a temporary folder");
        let path = dir.path().join("atp.sqlite");
        let store = SqliteStore::open_file(&path, false, StoreOptions::default())
            .await
            .expect("opening a fresh SQLite database");
        SqliteDb {
            store,
            path,
            _dir: dir,
        }
    }

    /// The database file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl TestDb for SqliteDb {
    type Store = SqliteStore;

    fn store(&self) -> &SqliteStore {
        &self.store
    }

    async fn open(&self, options: StoreOptions) -> SqliteStore {
        SqliteStore::open_file(&self.path, false, options)
            .await
            .expect("opening another handle")
    }

    fn child_env(&self) -> Vec<(String, String)> {
        vec![(
            "ATP_DATABASE_URL".into(),
            format!("sqlite://{}", self.path.display()),
        )]
    }
}

/// A fresh SQLite database (always available).
pub async fn sqlite_db() -> Option<SqliteDb> {
    Some(SqliteDb::new().await)
}

/// A random lower-case name for schemas and identifiers in tests.
pub fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

/// The PostgreSQL server benchmarks use: `ATP_BENCH_DATABASE_URL`, by
/// default the local one.
pub fn bench_database_url() -> String {
    std::env::var("ATP_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Drops `schema` and everything in it on the server at `url` (tests and
/// benchmarks clean up the schemas they made). Panics on failure: callers
/// are tests.
pub async fn drop_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP SCHEMA \"{}\" CASCADE",
            schema.replace('"', "\"\"")
        ))
        .await
        .unwrap_or_else(|e| panic!("dropping schema {schema}: {e}"));
}

/// Waits until `check` yields a value and returns it, checking every 20 ms;
/// panics naming `what` once `limit` has passed. The one way tests wait for
/// something that has no signal of its own (another process's write, a
/// status reached through the database): a deadline, never a fixed sleep.
pub async fn eventually<T, F, Fut>(limit: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Declares each listed `async fn case(db: impl TestDb)` once per engine:
/// modules `sqlite` and `postgres`, one `#[tokio::test]` each, on a fresh
/// database ([`sqlite_db`], [`postgres_db`]; a PostgreSQL test that cannot
/// get a server returns early, after the factory printed why). The one
/// per-engine test macro of the workspace.
#[macro_export]
macro_rules! per_engine_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = $crate::testing::sqlite_db().await else { return };
                    super::$case(db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = $crate::testing::postgres_db().await else { return };
                    super::$case(db).await;
                }
            )*
        }
    };
}
