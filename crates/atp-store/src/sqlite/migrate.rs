//! Embedded schema migrations, applied on open.
//!
//! The version lives in `PRAGMA user_version`, written in the same
//! `BEGIN IMMEDIATE` transaction as the migration, so two processes opening
//! a fresh file at once serialize: the second finds the work done.

use atp_core::{Error, Result};
use rusqlite::{Connection, TransactionBehavior};

use super::db;

/// (version, SQL), in order.
const MIGRATIONS: &[(u32, &str)] = crate::migrations::SQLITE;

/// The schema version this build writes.
pub const LATEST_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The version a database is at.
pub(super) fn current_version(conn: &Connection) -> Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))
        .map_err(db("reading the schema version"))
}

/// Brings the schema to `target`, refusing a database newer than this build.
pub(super) fn migrate(conn: &mut Connection, target: u32) -> Result<u32> {
    super::retry_busy(|| {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("beginning the migration"))?;
        let current = current_version(&tx)?;
        if current > LATEST_VERSION {
            return Err(Error::InvalidArgument(format!(
                "the database schema is version {current}, newer than this ATP understands ({LATEST_VERSION}); upgrade ATP"
            )));
        }
        for (version, sql) in MIGRATIONS {
            if *version > current && *version <= target {
                tx.execute_batch(sql)
                    .map_err(db(&format!("applying migration {version}")))?;
                tx.pragma_update(None, "user_version", version)
                    .map_err(db("recording the schema version"))?;
                tracing::info!(version, "applied SQLite migration");
            }
        }
        let reached = current_version(&tx)?;
        tx.commit().map_err(db("committing the migration"))?;
        Ok(reached)
    })
}
