-- ATP core schema (SQLite). Times are microseconds since the Unix epoch, UTC.
-- Mirrors migrations/postgres/0001_core.sql table for table, index for index.

CREATE TABLE atp_task_type (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL UNIQUE,
    handler        TEXT    NOT NULL,
    timeout_secs   REAL    NOT NULL CHECK (timeout_secs > 0),
    retention_secs REAL    NOT NULL,
    max_starts     INTEGER NOT NULL CHECK (max_starts >= 1),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

-- AUTOINCREMENT: ids are never reused, so a stale attempt can never name a
-- newer task that happened to get a deleted task's id.
CREATE TABLE atp_task (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    type_id          INTEGER NOT NULL REFERENCES atp_task_type (id),
    identifier       TEXT    NOT NULL,
    status           INTEGER NOT NULL CHECK (status BETWEEN 1 AND 6),
    inserted_at      INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    enqueued_at      INTEGER NOT NULL,
    starts           INTEGER NOT NULL DEFAULT 0,
    lease            INTEGER NOT NULL DEFAULT 0,
    holder           INTEGER,
    progress_percent REAL,
    progress_message TEXT,
    input            TEXT    NOT NULL,
    UNIQUE (type_id, identifier)
) STRICT;

-- The queue: only ACCEPTED rows, in FIFO order. Small whatever the table size.
CREATE INDEX atp_task_queue ON atp_task (enqueued_at, id) WHERE status = 1;
-- Listing newest first: unfiltered (also by type alone, filtering while it
-- walks), by status (also finds abandoned tasks), by type and status (also
-- finds retired tasks). Every index here is rewritten at every status
-- change, so there are no more of them than these.
CREATE INDEX atp_task_updated ON atp_task (updated_at, id);
CREATE INDEX atp_task_status_updated ON atp_task (status, updated_at, id);
CREATE INDEX atp_task_type_status_updated ON atp_task (type_id, status, updated_at, id);

CREATE TABLE atp_task_log (
    id      INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES atp_task (id) ON DELETE CASCADE,
    time    INTEGER NOT NULL,
    status  INTEGER NOT NULL,
    message TEXT    NOT NULL
) STRICT;
CREATE INDEX atp_task_log_task ON atp_task_log (task_id, id);

CREATE TABLE atp_task_response (
    task_id   INTEGER PRIMARY KEY REFERENCES atp_task (id) ON DELETE CASCADE,
    mime_type TEXT    NOT NULL,
    encoding  INTEGER NOT NULL,
    body      BLOB    NOT NULL,
    stored_at INTEGER NOT NULL
) STRICT;

-- Queue length without counting rows: 'in' counts entries into ACCEPTED,
-- 'out' counts exits. Two rows so that producers and claimers do not wait on
-- each other's row lock (it matters on PostgreSQL; SQLite mirrors it).
CREATE TABLE atp_queue_counter (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO atp_queue_counter (name, value) VALUES ('in', 0), ('out', 0);
