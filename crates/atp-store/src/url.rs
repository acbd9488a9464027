//! Choosing an engine from a database URL.

use atp_core::{Error, Result, StoreOptions};

use crate::any::AnyStore;
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;

/// A parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH` (`sqlite:///abs/path` or `sqlite://relative/path`),
    /// optionally `?synchronous=full`.
    SqliteFile {
        /// The file.
        path: std::path::PathBuf,
        /// `synchronous=FULL` instead of the default NORMAL.
        synchronous_full: bool,
    },
    /// `sqlite::memory:` or `sqlite://:memory:`: private to this handle.
    SqliteMemory,
    /// `postgres://…` or `postgresql://…`, as libpq understands it.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses `url`, refusing unknown schemes with a message that lists the
    /// known ones.
    pub fn parse(url: &str) -> Result<Self> {
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            return Ok(DatabaseUrl::SqliteMemory);
        }
        if let Some(rest) = url.strip_prefix("sqlite://") {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if path.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "database URL {url:?} names no file (expected sqlite://PATH)"
                )));
            }
            let mut synchronous_full = false;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.to_ascii_lowercase().as_str() {
                    "synchronous=full" => synchronous_full = true,
                    "synchronous=normal" => synchronous_full = false,
                    other => {
                        return Err(Error::InvalidArgument(format!(
                            "unknown SQLite URL option {other:?} (known: synchronous=normal|full)"
                        )));
                    }
                }
            }
            return Ok(DatabaseUrl::SqliteFile {
                path: path.into(),
                synchronous_full,
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        Err(Error::InvalidArgument(format!(
            "unsupported database URL {url:?} (expected sqlite://PATH, sqlite::memory: or postgres://…)"
        )))
    }
}

/// Opens (creating and migrating as needed) the database at `url`.
pub async fn open(url: &str, options: StoreOptions) -> Result<AnyStore> {
    Ok(match DatabaseUrl::parse(url)? {
        DatabaseUrl::SqliteFile {
            path,
            synchronous_full,
        } => AnyStore::Sqlite(SqliteStore::open_file(&path, synchronous_full, options).await?),
        DatabaseUrl::SqliteMemory => AnyStore::Sqlite(SqliteStore::open_memory(options).await?),
        DatabaseUrl::Postgres(url) => AnyStore::Postgres(PgStore::connect(&url, options).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of no connections, or of absurdly many (which once aborted
    /// the process for want of memory: found by the CLI fuzz test), is
    /// refused by both engines, before any connection is tried.
    #[tokio::test]
    async fn a_pool_size_of_zero_or_too_many_is_refused() {
        for pool_size in [0, atp_core::StoreOptions::MAX_POOL_SIZE + 1, 1 << 32] {
            let options = atp_core::StoreOptions {
                pool_size,
                ..Default::default()
            };
            for url in ["sqlite::memory:", "postgres://nobody@127.0.0.1:1/none"] {
                let err = open(url, options.clone()).await.unwrap_err();
                assert!(
                    matches!(&err, atp_core::Error::InvalidArgument(m) if m.contains("pool size")),
                    "{url}, {pool_size}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn urls_choose_the_engine() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/atp.db").unwrap(),
            DatabaseUrl::SqliteFile {
                path: "/var/lib/atp.db".into(),
                synchronous_full: false
            }
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://rel/atp.db?synchronous=FULL").unwrap(),
            DatabaseUrl::SqliteFile {
                path: "rel/atp.db".into(),
                synchronous_full: true
            }
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite::memory:").unwrap(),
            DatabaseUrl::SqliteMemory
        );
        assert!(matches!(
            DatabaseUrl::parse("postgresql://u@h/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        for bad in ["mysql://x", "sqlite://", "sqlite://a?journal=off", "atp.db"] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
