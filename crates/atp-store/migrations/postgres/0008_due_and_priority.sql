-- Delayed tasks and priorities (issue 11). Mirrors
-- migrations/sqlite/0005_due_and_priority.sql.
--
-- A queued task is claimable from `due_at` on; queued tasks run by
-- priority (higher first), then due time, then enqueue time. A task whose
-- due time had not come when it was queued is `delayed`: it waits in its
-- own small index, out of the claim's way, until a claim finds it due and
-- clears the flag (postgres/due.rs). So the claim's indexes hold only
-- tasks that may run now, and 100,000 tasks waiting for tomorrow cost a
-- claim nothing.
ALTER TABLE atp_task_type ADD COLUMN priority integer NOT NULL DEFAULT 0;
ALTER TABLE atp_task ADD COLUMN priority integer NOT NULL DEFAULT 0;
ALTER TABLE atp_task ADD COLUMN delayed boolean NOT NULL DEFAULT false;
ALTER TABLE atp_task ADD COLUMN due_at timestamptz;
-- Every task so far was due when it was enqueued.
UPDATE atp_task SET due_at = enqueued_at;
ALTER TABLE atp_task ALTER COLUMN due_at SET NOT NULL;
DROP INDEX atp_task_queue;
CREATE INDEX atp_task_queue ON atp_task (priority DESC, due_at, enqueued_at, id)
    WHERE status = 1 AND NOT delayed;
DROP INDEX atp_task_queue_type;
CREATE INDEX atp_task_queue_type ON atp_task (type_id, priority DESC, due_at, enqueued_at, id)
    WHERE status = 1 AND NOT delayed;
CREATE INDEX atp_task_delayed ON atp_task (due_at, id) WHERE status = 1 AND delayed;
