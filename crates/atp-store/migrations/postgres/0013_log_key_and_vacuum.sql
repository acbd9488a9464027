-- Upkeep of the hot path (issue 13).
--
-- 1. The log's primary key on `id` alone was never read: a task's log is
--    read by task (`atp_task_log_task`), and the cascade of a task's
--    deletion goes by task too. Every log record paid for two B-tree
--    inserts; (task_id, id) as the primary key keeps one, unique and still
--    the replica identity.
CREATE UNIQUE INDEX atp_task_log_key ON atp_task_log (task_id, id);
ALTER TABLE atp_task_log DROP CONSTRAINT atp_task_log_pkey;
DROP INDEX atp_task_log_task;
ALTER TABLE atp_task_log ADD CONSTRAINT atp_task_log_task PRIMARY KEY USING INDEX atp_task_log_key;

-- 2. Autovacuum for a queue. At the defaults a table is vacuumed once a
--    fifth of it is dead: the chaos suite's overload run gathered 300,000
--    dead versions in `atp_task` with nothing holding them back, and every
--    claim walked the queue index's entries for them. Vacuum these tables
--    after a fixed number of dead versions, whatever their size, and
--    without the cost-based pauses (their pages are hot in memory).
ALTER TABLE atp_task SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 20000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE atp_task_log SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 50000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE atp_queue_counter SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE atp_daemon SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
