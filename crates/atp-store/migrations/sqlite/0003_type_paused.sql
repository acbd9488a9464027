-- A type's pause (issue 11): while 1, claims skip its tasks (sqlite/queue.rs).
-- Existing types run, as before. Mirrors migrations/postgres/0006_type_paused.sql.
ALTER TABLE atp_task_type ADD COLUMN paused INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1));
