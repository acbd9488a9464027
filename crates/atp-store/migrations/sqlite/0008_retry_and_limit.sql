-- A type's retry policy and its limit of running tasks (issue 11).
-- Mirrors migrations/postgres/0011_retry_and_limit.sql. (Versions 6 and 7
-- belong to other changes of the same release.)
--
-- Retry policy: with both set, a handler's failure while starts remain
-- puts the task back in the queue, due after an exponential back-off
-- (atp_core::RetryPolicy); NULL, as for every type so far, keeps failures
-- final.
ALTER TABLE atp_task_type ADD COLUMN retry_delay_secs REAL;
ALTER TABLE atp_task_type ADD COLUMN retry_max_delay_secs REAL;
-- At most this many of the type's tasks held (SCHEDULED, RUNNING, PAUSED)
-- at once, across every daemon; NULL: no limit. Claims count the type's
-- held tasks through an index (bounded by the tasks daemons hold, never
-- the table).
ALTER TABLE atp_task_type ADD COLUMN max_running INTEGER CHECK (max_running >= 1);
