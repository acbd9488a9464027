-- A type's retry policy (issue 11): with both set, a handler's failure
-- while starts remain puts the task back in the queue, due after an
-- exponential back-off (atp_core::RetryPolicy); NULL, as for every type
-- so far, keeps failures final. Mirrors
-- migrations/postgres/0011_retry_policy.sql. (Versions 6 and 7 belong to
-- other changes of the same release.)
ALTER TABLE atp_task_type ADD COLUMN retry_delay_secs REAL;
ALTER TABLE atp_task_type ADD COLUMN retry_max_delay_secs REAL;
