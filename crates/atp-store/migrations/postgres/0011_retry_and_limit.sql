-- A type's retry policy and its limit of running tasks (issue 11).
-- Mirrors migrations/sqlite/0008_retry_and_limit.sql. (Versions 9 and 10
-- belong to other changes of the same release.)
--
-- Retry policy: with both set, a handler's failure while starts remain
-- puts the task back in the queue, due after an exponential back-off
-- (atp_core::RetryPolicy); NULL, as for every type so far, keeps failures
-- final.
ALTER TABLE atp_task_type ADD COLUMN retry_delay_secs double precision;
ALTER TABLE atp_task_type ADD COLUMN retry_max_delay_secs double precision;
-- At most this many of the type's tasks held (SCHEDULED, RUNNING, PAUSED)
-- at once, across every daemon; NULL: no limit. Claims of limited types
-- lock the type rows (postgres/limit.rs) and count the type's held tasks
-- through an index of held tasks (atp_task_holder): bounded by the tasks
-- daemons hold, never the table.
ALTER TABLE atp_task_type ADD COLUMN max_running integer CHECK (max_running >= 1);
