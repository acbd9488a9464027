//! The PostgreSQL half of the store benchmark: a fresh schema per run on
//! the server named by `ATP_BENCH_DATABASE_URL`, and the 1,000,000-task
//! fill in plain SQL.

use atp_store::AnyStore;
use atp_store::postgres::PgStore;

use super::{Db, FILLED, options};

fn url() -> String {
    atp_store::testing::bench_database_url()
}

async fn client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to the benchmark server");
    tokio::spawn(connection);
    client
}

/// A new schema; schemas of earlier runs are dropped first, so an
/// interrupted benchmark leaves at most one behind.
pub async fn fresh() -> Db {
    fresh_keeping(None).await
}

/// [`fresh`], except that it leaves the schema `keep` (in use) alone.
pub async fn fresh_keeping(keep: Option<&str>) -> Db {
    let c = client().await;
    let old = c
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'atp\\_bench\\_%'",
            &[],
        )
        .await
        .unwrap();
    for row in old {
        let name: String = row.get(0);
        if Some(name.as_str()) == keep {
            continue;
        }
        c.batch_execute(&format!("DROP SCHEMA \"{name}\" CASCADE"))
            .await
            .unwrap();
    }
    let schema = format!("atp_bench_{}", atp_store::testing::random_suffix());
    let store = PgStore::connect_with_schema(&url(), &schema, options())
        .await
        .expect("opening a benchmark schema");
    Db {
        store: AnyStore::Postgres(store),
        _dir: None,
        schema: Some(schema),
    }
}

/// 1,000,000 FINISHED tasks with four log records each.
pub async fn fill(db: &Db) {
    let schema = db.schema.as_deref().expect("a PostgreSQL bench schema");
    let c = client().await;
    c.batch_execute(&format!(
        "SET search_path = \"{schema}\";
         BEGIN;
         INSERT INTO atp_task_type (name, handler, timeout_secs, retention_secs, max_starts, created_at, updated_at)
           VALUES ('old', 'builtin:noop', 3600, -1, 3, now(), now());
         INSERT INTO atp_task (type_id, identifier, status, inserted_at, updated_at, enqueued_at, due_at, starts, lease, holder, input)
           SELECT (SELECT id FROM atp_task_type WHERE name = 'old'), 'old-' || i, 5,
                  now() - interval '1 day', now() - interval '1 hour', now() - interval '1 day', now() - interval '1 day', 1, 1, 7, 'null'
           FROM generate_series(1, {FILLED}) AS i;
         INSERT INTO atp_task_log (task_id, time, status, message)
           SELECT t.id, t.updated_at, s.status, 'filled'
           FROM atp_task t JOIN atp_task_type y ON y.id = t.type_id, (VALUES (1), (2), (3), (5)) AS s (status)
           WHERE y.name = 'old';
         COMMIT;"
    ))
    .await
    .unwrap();
    // VACUUM refuses to run inside the implicit transaction of a batch.
    c.batch_execute(&format!("VACUUM ANALYZE \"{schema}\".atp_task"))
        .await
        .unwrap();
    c.batch_execute(&format!("VACUUM ANALYZE \"{schema}\".atp_task_log"))
        .await
        .unwrap();
    checkpoint().await;
}

/// `VACUUM ANALYZE` of one table of the bench schema.
pub async fn vacuum_analyze(db: &Db, table: &str) {
    let schema = db.schema.as_deref().expect("a PostgreSQL bench schema");
    client()
        .await
        .batch_execute(&format!("VACUUM ANALYZE \"{schema}\".{table}"))
        .await
        .unwrap();
}

/// Writes every dirty page out now, so that the probes after the fill do
/// not commit while the checkpointer flushes a gigabyte behind them (which
/// would measure the disk, not the queries).
pub async fn checkpoint() {
    client().await.batch_execute("CHECKPOINT").await.unwrap();
}

/// The server's WAL counters so far (`pg_stat_wal`, server-wide): records,
/// full-page images and bytes. Their rise over a phase tells how much its
/// writes cost the log; full-page images count the pages its writes
/// touched for the first time since a checkpoint.
pub async fn wal() -> [i64; 3] {
    let row = client()
        .await
        .query_one(
            "SELECT wal_records, wal_fpi, wal_bytes::int8 FROM pg_stat_wal",
            &[],
        )
        .await
        .unwrap();
    [row.get(0), row.get(1), row.get(2)]
}
