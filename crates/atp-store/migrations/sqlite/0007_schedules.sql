-- Periodic tasks (issue 11): one row per schedule. `last_enqueued_at` only
-- moves forward, by compare-and-set, in the transaction that enqueues the
-- occurrence's task (sqlite/schedule.rs): the exactly-once guard. Deleting a
-- type deletes its schedules. Mirrors migrations/postgres/0010_schedules.sql.
CREATE TABLE atp_schedule (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL UNIQUE,
    type_id          INTEGER NOT NULL REFERENCES atp_task_type (id) ON DELETE CASCADE,
    expression       TEXT    NOT NULL,
    timezone         TEXT    NOT NULL,
    input            TEXT    NOT NULL,
    catch_up         TEXT    NOT NULL CHECK (catch_up IN ('last', 'none')),
    paused           INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    last_enqueued_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

-- A type's deletion finds its schedules without a scan.
CREATE INDEX atp_schedule_type ON atp_schedule (type_id);
