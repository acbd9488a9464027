-- A type's pause (issue 11): while true, claims skip its tasks
-- (postgres/queue.rs). Existing types run, as before. A constant default
-- adds the column without rewriting the table. Mirrors
-- migrations/sqlite/0003_type_paused.sql.
ALTER TABLE atp_task_type ADD COLUMN paused BOOLEAN NOT NULL DEFAULT false;
