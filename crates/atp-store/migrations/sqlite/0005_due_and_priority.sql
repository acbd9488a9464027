-- Delayed tasks and priorities (issue 11). Mirrors
-- migrations/postgres/0008_due_and_priority.sql.
--
-- A queued task is claimable from `due_at` on; queued tasks run by
-- priority (higher first), then due time, then enqueue time. A task whose
-- due time had not come when it was queued is `delayed`: it waits in its
-- own small index, out of the claim's way, until a claim finds it due and
-- clears the flag (sqlite/due.rs). So the claim's index holds only tasks
-- that may run now, and 100,000 tasks waiting for tomorrow cost a claim
-- nothing.
ALTER TABLE atp_task_type ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE atp_task ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE atp_task ADD COLUMN due_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE atp_task ADD COLUMN delayed INTEGER NOT NULL DEFAULT 0 CHECK (delayed IN (0, 1));
-- Every task so far was due when it was enqueued.
UPDATE atp_task SET due_at = enqueued_at;
DROP INDEX atp_task_queue;
CREATE INDEX atp_task_queue ON atp_task (priority DESC, due_at, enqueued_at, id)
    WHERE status = 1 AND delayed = 0;
CREATE INDEX atp_task_delayed ON atp_task (due_at, id) WHERE status = 1 AND delayed = 1;
