-- CANCELLED (status 7): the status CHECK of atp_task allows 7.
-- The constraint was created unnamed in 0001, so PostgreSQL named it
-- atp_task_status_check. Dropped and added again in the migration's one
-- transaction: no moment allows codes outside 1-7. Adding it scans the
-- table once under the ALTER's lock (a migration runs at start-up).
ALTER TABLE atp_task DROP CONSTRAINT atp_task_status_check;
ALTER TABLE atp_task ADD CONSTRAINT atp_task_status_check CHECK (status BETWEEN 1 AND 7);
