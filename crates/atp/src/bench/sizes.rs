//! The on-disk size of ATP's tables and indexes, sampled during a
//! steady-state run (`atp bench --duration`): whether they stop growing
//! once the retention period has passed is what the run is for.
//!
//! PostgreSQL: every `atp_…` table of the store's schema and each of its
//! indexes (`pg_relation_size`, the main fork), with the statistics
//! collector's live and dead tuple estimates, over a connection of its own
//! (the store's pool is not for queries of other kinds). SQLite: the
//! database file and its WAL.

use std::path::PathBuf;

use atp_daemon::bench::Sampler;
use atp_store::{AnyStore, DatabaseUrl};
use serde::Serialize;

/// One table, index or file.
#[derive(Debug, Clone, Serialize)]
pub struct Relation {
    /// The table's, index's or file's name.
    pub name: String,
    /// `table`, `index` or `file`.
    pub kind: &'static str,
    /// For an index: its table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Size on disk.
    pub bytes: i64,
    /// PostgreSQL tables: the live tuples, as the statistics estimate them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_tuples: Option<i64>,
    /// PostgreSQL tables: the dead tuples not yet vacuumed (estimate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_tuples: Option<i64>,
}

/// Samples sizes of the store at `url`. A sample that fails is `None`
/// (with one warning), not the end of the run.
pub enum Sizes {
    /// An in-memory database has no size worth sampling.
    Nothing,
    Sqlite(PathBuf),
    Postgres {
        client: tokio_postgres::Client,
        schema: Option<String>,
        warned: bool,
    },
}

/// Every ATP table of the schema (`$1`, else the current one), each
/// followed by its indexes.
const SIZES: &str = "
SELECT c.relname::text, c.relkind = 'i' AS is_index, t.relname::text AS of_table,
       pg_relation_size(c.oid), s.n_live_tup, s.n_dead_tup
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_index i ON i.indexrelid = c.oid
  LEFT JOIN pg_class t ON t.oid = i.indrelid
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE n.nspname = coalesce($1, current_schema())
   AND c.relkind IN ('r', 'i')
   AND coalesce(t.relname, c.relname) LIKE 'atp\\_%'
 ORDER BY coalesce(t.relname, c.relname), c.relkind DESC, c.relname";

impl Sizes {
    /// A sampler for `store`, opened at `url`.
    pub async fn open(store: &AnyStore, url: &str) -> anyhow::Result<Sizes> {
        Ok(match DatabaseUrl::parse(url)? {
            DatabaseUrl::SqliteMemory => Sizes::Nothing,
            DatabaseUrl::SqliteFile { path, .. } => Sizes::Sqlite(path),
            DatabaseUrl::Postgres(url) => {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| anyhow::anyhow!("connecting to sample table sizes: {e}"))?;
                tokio::spawn(connection);
                let schema = match store {
                    AnyStore::Postgres(pg) => pg.schema().map(str::to_owned),
                    AnyStore::Sqlite(_) => None,
                };
                Sizes::Postgres {
                    client,
                    schema,
                    warned: false,
                }
            }
        })
    }
}

impl Sampler for Sizes {
    type Sample = Option<Vec<Relation>>;

    async fn sample(&mut self) -> Option<Vec<Relation>> {
        match self {
            Sizes::Nothing => None,
            Sizes::Sqlite(path) => Some(sqlite_files(path)),
            Sizes::Postgres {
                client,
                schema,
                warned,
            } => match postgres_relations(client, schema.as_deref()).await {
                Ok(relations) => Some(relations),
                Err(e) => {
                    if !std::mem::replace(warned, true) {
                        tracing::warn!("sampling table sizes failed: {e}");
                    }
                    None
                }
            },
        }
    }
}

async fn postgres_relations(
    client: &tokio_postgres::Client,
    schema: Option<&str>,
) -> Result<Vec<Relation>, tokio_postgres::Error> {
    let rows = client.query(SIZES, &[&schema]).await?;
    Ok(rows
        .iter()
        .map(|row| Relation {
            name: row.get(0),
            kind: if row.get(1) { "index" } else { "table" },
            table: row.get(2),
            bytes: row.get(3),
            live_tuples: row.get(4),
            dead_tuples: row.get(5),
        })
        .collect())
}

/// The database file and its WAL (a missing WAL counts as 0 bytes).
fn sqlite_files(path: &std::path::Path) -> Vec<Relation> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), PathBuf::from(wal)]
        .into_iter()
        .map(|file| Relation {
            bytes: std::fs::metadata(&file).map_or(0, |m| m.len() as i64),
            name: file.display().to_string(),
            kind: "file",
            table: None,
            live_tuples: None,
            dead_tuples: None,
        })
        .collect()
}
