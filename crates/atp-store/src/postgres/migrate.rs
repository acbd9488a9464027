//! Embedded schema migrations, applied on connect.
//!
//! The version lives in `atp_schema_version` (one row per applied
//! migration), written in the same transaction as the migration, under a
//! transaction-level advisory lock keyed by the schema: two processes
//! connecting to a fresh database at once serialize, and the second finds
//! the work done. Tests in different schemas do not wait for each other.

use atp_core::{Error, Result};

use super::Conn;
use super::row::get;

/// (version, SQL), in order.
const MIGRATIONS: &[(u32, &str)] = crate::migrations::POSTGRES;

/// The schema version this build writes.
pub const LATEST_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// First key of ATP's advisory locks ("ATP" in ASCII); the second is a hash
/// of the schema name.
const LOCK_CLASS: i32 = 0x0041_5450;

/// The `-c search_path=…` connection option that puts every unqualified
/// name in `schema`. Backslashes and spaces are escaped for the server's
/// option splitter; the name is quoted as an identifier.
pub(super) fn search_path_option(schema: &str) -> Result<String> {
    check_schema_name(schema)?;
    let quoted = quote_identifier(schema)
        .replace('\\', "\\\\")
        .replace(' ', "\\ ");
    Ok(format!("-c search_path={quoted}"))
}

/// PostgreSQL identifiers are at most 63 bytes; control characters would
/// not survive the connection options.
fn check_schema_name(schema: &str) -> Result<()> {
    if schema.is_empty() || schema.len() > 63 || schema.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "invalid PostgreSQL schema name {schema:?} (1 to 63 bytes, no control characters)"
        )));
    }
    Ok(())
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates `schema` unless it exists. Checking first matters: `CREATE
/// SCHEMA IF NOT EXISTS` needs the CREATE privilege even when the schema is
/// there, which a user given only that schema does not have.
pub(super) async fn ensure_schema(c: Conn<'_>, schema: &str) -> Result<()> {
    c.execute(
        "locking the schema creation",
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_CLASS, &schema],
    )
    .await?;
    let exists = c
        .query_opt(
            "looking up the schema",
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .await?
        .is_some();
    if !exists {
        c.batch_execute(
            "creating the schema",
            &format!("CREATE SCHEMA {}", quote_identifier(schema)),
        )
        .await?;
        tracing::info!(schema, "created PostgreSQL schema");
    }
    Ok(())
}

/// The version a database is at.
pub(super) async fn current_version(c: Conn<'_>) -> Result<u32> {
    let row = c
        .query_one(
            "reading the schema version",
            "SELECT coalesce(max(version), 0) FROM atp_schema_version",
            &[],
        )
        .await?;
    let version: i32 = get(&row, 0)?;
    u32::try_from(version).map_err(|_| Error::Corrupt(format!("negative schema version {version}")))
}

/// Brings the schema to `target`, refusing a database newer than this build.
/// Runs inside the caller's transaction.
pub(super) async fn migrate(c: Conn<'_>, target: u32) -> Result<u32> {
    c.execute(
        "locking the migration",
        "SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))",
        &[&LOCK_CLASS],
    )
    .await?;
    c.batch_execute(
        "creating the schema version table",
        "CREATE TABLE IF NOT EXISTS atp_schema_version (
             version    INTEGER     PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current = current_version(c).await?;
    if current > LATEST_VERSION {
        return Err(Error::InvalidArgument(format!(
            "the database schema is version {current}, newer than this ATP understands ({LATEST_VERSION}); upgrade ATP"
        )));
    }
    for (version, sql) in MIGRATIONS {
        if *version > current && *version <= target {
            c.batch_execute(&format!("applying migration {version}"), sql)
                .await?;
            let stored = i32::try_from(*version).unwrap_or(i32::MAX);
            c.execute(
                "recording the schema version",
                "INSERT INTO atp_schema_version (version) VALUES ($1)",
                &[&stored],
            )
            .await?;
            tracing::info!(version, "applied PostgreSQL migration");
        }
    }
    current_version(c).await
}
