-- CANCELLED (status 7): the status CHECK of atp_task allows 7.
--
-- SQLite cannot alter a CHECK constraint. A rebuild of atp_task (the
-- 12-step procedure) cannot run here: migrations run in one transaction
-- with foreign keys on, and dropping the old table would cascade-delete
-- every log record and response. Loosening a CHECK is one of the changes
-- SQLite's ALTER TABLE page ("Making Other Kinds Of Table Schema
-- Changes") allows by editing the stored CREATE TABLE text: no row can
-- violate the looser constraint, and the file format does not change.
-- `migrate.rs` completes the procedure for a migration that writes the
-- schema: it bumps `schema_version` (so every other connection, in any
-- process, reloads the schema), reloads this connection's, and runs
-- `PRAGMA integrity_check`, all before the commit.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, 'CHECK (status BETWEEN 1 AND 6)', 'CHECK (status BETWEEN 1 AND 7)')
 WHERE type = 'table' AND name = 'atp_task';
PRAGMA writable_schema = OFF;
