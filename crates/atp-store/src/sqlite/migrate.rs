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

/// What a migration that edits the stored schema text says (SQLite's
/// ALTER TABLE page, "Making Other Kinds Of Table Schema Changes").
const WRITES_SCHEMA: &str = "PRAGMA writable_schema = ON";

/// Completes the documented procedure after a migration edited
/// `sqlite_schema` itself, inside its transaction: one more
/// `schema_version`, so every connection (in any process) parses the schema
/// again, this connection's schema reloaded at once, and an integrity check
/// that also re-checks every row against the edited constraints; any
/// finding rolls the migration back.
fn schema_written(tx: &rusqlite::Transaction<'_>, version: u32) -> Result<()> {
    let cookie: i64 = tx
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .map_err(db("reading the schema cookie"))?;
    tx.pragma_update(None, "schema_version", cookie + 1)
        .map_err(db("bumping the schema cookie"))?;
    tx.execute_batch("PRAGMA writable_schema = RESET")
        .map_err(db("reloading the schema"))?;
    let findings: Vec<String> = tx
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(db("checking the database's integrity"))?;
    if findings != ["ok"] {
        return Err(Error::Corrupt(format!(
            "migration {version} left the database failing its integrity check: {}",
            findings.join("; ")
        )));
    }
    Ok(())
}

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
                if sql.contains(WRITES_SCHEMA) {
                    schema_written(&tx, *version)?;
                }
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
