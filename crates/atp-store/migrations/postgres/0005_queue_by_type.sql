-- PostgreSQL only. Each claimable type's oldest queued tasks, in FIFO
-- order: a claim restricted to some types reads a few entries per type
-- here instead of sorting every queued task of those types (see
-- postgres/queue.rs, picked_cte).
CREATE INDEX atp_task_queue_type ON atp_task (type_id, enqueued_at, id) WHERE status = 1;
