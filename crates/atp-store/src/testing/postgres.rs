//! A fresh PostgreSQL schema per test.

use atp_core::StoreOptions;

use super::{TestDb, pg_server, random_suffix};
use crate::postgres::PgStore;

/// A schema of its own on the test server, dropped with the value; the
/// drop also checks that nothing leaked into the `public` schema.
pub struct PgDb {
    store: PgStore,
    url: String,
    schema: String,
    /// ATP tables in `public` before the test (another tool may own some).
    public_before: i64,
}

const PUBLIC_ATP_TABLES: &str =
    "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'atp\\_%'";

async fn public_atp_tables(url: &str) -> Result<i64, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client.query_one(PUBLIC_ATP_TABLES, &[]).await?.get(0))
}

impl PgDb {
    /// A fresh schema, or `None` (after a notice) when no server can be had
    /// and `ATP_TEST_REQUIRE_POSTGRES` is not `1`.
    pub async fn new() -> Option<Self> {
        let url = match pg_server::server_url() {
            Ok(url) => url,
            Err(why) if !pg_server::required() => {
                eprintln!("NOTICE: PostgreSQL test skipped: {why}");
                return None;
            }
            Err(why) => panic!(
                "PostgreSQL is required (ATP_TEST_REQUIRE_POSTGRES=1) but unavailable: {why}"
            ),
        };
        let public_before = public_atp_tables(&url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        let schema = format!("atp_test_{}", random_suffix());
        let store = PgStore::connect_with_schema(&url, &schema, StoreOptions::default())
            .await
            .unwrap_or_else(|e| panic!("opening a test schema on {url}: {e}"));
        Some(PgDb {
            store,
            url,
            schema,
            public_before,
        })
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A plain connection with the schema on its search path, for setting
    /// up what the API cannot (old versions, old timestamps, plans).
    pub async fn raw(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connecting");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("SET search_path = \"{}\"", self.schema))
            .await
            .expect("setting the search path");
        client
    }
}

impl TestDb for PgDb {
    type Store = PgStore;

    fn store(&self) -> &PgStore {
        &self.store
    }

    async fn open(&self, options: StoreOptions) -> PgStore {
        PgStore::connect_with_schema(&self.url, &self.schema, options)
            .await
            .expect("opening another handle")
    }

    fn child_env(&self) -> Vec<(String, String)> {
        vec![
            ("ATP_DATABASE_URL".into(), self.url.clone()),
            ("ATP_DATABASE_SCHEMA".into(), self.schema.clone()),
        ]
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        let before = self.public_before;
        // Drop runs inside the test's runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!(
                        // A connection of the blocked test runtime may still
                        // hold a lock: give up (with a notice) rather than hang.
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                    ))
                    .await?;
                let leaked: i64 = client.query_one(PUBLIC_ATP_TABLES, &[]).await?.get(0);
                Ok::<i64, Box<dyn std::error::Error + Send + Sync>>(leaked)
            })
            .map_err(|e| e.to_string())
        })
        .join();
        match dropped {
            Ok(Ok(n)) if n > before && !std::thread::panicking() => {
                panic!("{} ATP table(s) leaked into the public schema", n - before)
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("NOTICE: could not drop test schema {}: {e}", self.schema),
            _ => {}
        }
    }
}

/// A fresh PostgreSQL schema, or `None` when skipped.
pub async fn postgres_db() -> Option<PgDb> {
    PgDb::new().await
}
