//! Which database the command works on: `--database URL` (or
//! `ATP_DATABASE_URL`), by default a SQLite file in the user's data folder.

use std::path::PathBuf;

use anyhow::Context as _;
use atp_core::StoreOptions;
use atp_store::AnyStore;
use clap::Args;

/// Global options that pick and tune the database.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// sqlite://PATH or postgres://USER@HOST/DB [default: a SQLite file in
    /// the user's data folder]
    #[arg(long, global = true, env = "ATP_DATABASE_URL")]
    database: Option<String>,
    /// PostgreSQL only: keep ATP's tables in this schema (created if
    /// missing) instead of the connection's default.
    #[arg(long, global = true, env = "ATP_DATABASE_SCHEMA")]
    schema: Option<String>,
    /// Refuse enqueues once this many tasks wait (0 = unlimited).
    #[arg(long, global = true, env = "ATP_MAX_QUEUE_SIZE")]
    max_queue_size: Option<u64>,
    /// Refuse task inputs larger than this many bytes of JSON.
    #[arg(long, global = true, env = "ATP_MAX_INPUT_BYTES")]
    max_input_bytes: Option<usize>,
    /// Database connections this process opens at most (PostgreSQL: the
    /// pool; SQLite: readers beside the one writer) [default: 16].
    #[arg(long, global = true, env = "ATP_POOL_SIZE")]
    pool_size: Option<usize>,
}

impl DatabaseArgs {
    /// The URL in use.
    pub fn url(&self) -> anyhow::Result<String> {
        match &self.database {
            Some(url) => Ok(url.clone()),
            None => {
                let path = default_sqlite_path()?;
                Ok(format!("sqlite://{}", path.display()))
            }
        }
    }

    /// Opens (and migrates) the database.
    pub async fn open(&self) -> anyhow::Result<AnyStore> {
        let url = self.url()?;
        let mut options = StoreOptions::default();
        if let Some(n) = self.max_queue_size {
            options.max_queue_size = n;
        }
        if let Some(n) = self.max_input_bytes {
            options.max_input_bytes = n;
        }
        if let Some(n) = self.pool_size {
            options.pool_size = n;
        }
        if self.database.is_none() {
            let path = default_sqlite_path()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let store = match (&self.schema, url.starts_with("postgres")) {
            (Some(schema), true) => AnyStore::Postgres(
                atp_store::postgres::PgStore::connect_with_schema(&url, schema, options).await?,
            ),
            (Some(_), false) => anyhow::bail!("--schema applies to PostgreSQL databases only"),
            (None, _) => atp_store::open(&url, options).await?,
        };
        Ok(store)
    }
}

/// `$XDG_DATA_HOME/atp/atp.sqlite`, else `~/.local/share/atp/atp.sqlite`.
fn default_sqlite_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .context("neither XDG_DATA_HOME nor HOME is set; pass --database")?;
            PathBuf::from(home).join(".local").join("share")
        }
    };
    Ok(base.join("atp").join("atp.sqlite"))
}
