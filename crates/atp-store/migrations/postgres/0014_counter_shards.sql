-- Producers no longer queue behind one row (issue 13). Every enqueue used to
-- update the one 'in' counter row and hold its lock through the commit's
-- WAL flush, so enqueues committed one at a time, whatever the number of
-- producers. The 'in' count is now spread over 16 rows (shards); an enqueue
-- adds to the shard of its connection (backend pid modulo 16), so up to 16
-- enqueue transactions commit side by side and share WAL flushes. Every
-- other writer of 'in' (re-enqueues, retries, rescues) keeps to shard 0,
-- and 'out' has only shard 0. Readers sum the shards.
--
-- The queue limit stays exact (see atp_count_in below and ARCHITECTURE.md).
ALTER TABLE atp_queue_counter ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE atp_queue_counter DROP CONSTRAINT atp_queue_counter_pkey;
ALTER TABLE atp_queue_counter ADD CONSTRAINT atp_queue_counter_pkey PRIMARY KEY (name, shard);
INSERT INTO atp_queue_counter (name, shard, value)
    SELECT 'in', s, 0 FROM generate_series(1, 15) AS s;

-- Counts `added` tasks in and raises AQ001 if that overflows `max_queued`
-- (0: no limit). Unlike the two-argument form it does not notify
-- `atp_tasks`: a transaction that notifies takes PostgreSQL's one global
-- notification lock at its commit and holds it through the WAL flush, so
-- notifying enqueues commit one at a time again, shards or not. The caller
-- notifies after its commit, in a transaction of its own that writes no WAL.
--
-- The limit is exact by a bound on what it cannot see. An enqueue holds its
-- shard's row lock from this update to its commit, so at any moment at most
-- one uncommitted enqueue per shard has passed its check. On the fast path
-- (`exact` false, at most 100 tasks) an enqueue locks only its own shard and
-- passes if the committed count, its own tasks and 15 × 100 for the other
-- shards' in-flight enqueues stay within the limit. If they do not (the
-- queue is within 1,500 of its limit) it raises AQ002 and the caller rolls
-- back and runs the enqueue again with `exact`: the exact path (also taken
-- by a batch of more than 100) locks every 'in' shard in shard order,
-- waiting for every in-flight enqueue to end, and compares the true count
-- with the limit. No enqueue ever waits for more shards while holding one
-- (no lock cycles): the fast path holds one and asks for nothing more, the
-- exact path takes them all in order, holding none before.
CREATE FUNCTION atp_count_in(added BIGINT, max_queued BIGINT, exact BOOLEAN) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    fast_most CONSTANT BIGINT := 100;
    others CONSTANT BIGINT := 15 * 100;
    queued BIGINT;
BEGIN
    IF added > fast_most THEN
        exact := true;
    END IF;
    IF max_queued > 0 AND exact THEN
        PERFORM 1 FROM atp_queue_counter WHERE name = 'in' ORDER BY shard FOR UPDATE;
        UPDATE atp_queue_counter SET value = value + added WHERE name = 'in' AND shard = 0;
        SELECT sum(CASE name WHEN 'in' THEN value ELSE -value END)
            FROM atp_queue_counter INTO queued;
        IF queued > max_queued THEN
            RAISE EXCEPTION 'the queue is full (% tasks)', max_queued USING ERRCODE = 'AQ001';
        END IF;
    ELSE
        UPDATE atp_queue_counter SET value = value + added
            WHERE name = 'in' AND shard = pg_backend_pid() % 16;
        IF max_queued > 0 THEN
            SELECT sum(CASE name WHEN 'in' THEN value ELSE -value END)
                FROM atp_queue_counter INTO queued;
            IF queued + others > max_queued THEN
                RAISE EXCEPTION 'the queue filled during the enqueue' USING ERRCODE = 'AQ002';
            END IF;
        END IF;
    END IF;
    RETURN queued;
END
$$;

-- The two-argument form, for a client from before this migration (it
-- knows neither shards nor AQ002, and expects the notification): always
-- the exact path.
CREATE OR REPLACE FUNCTION atp_count_in(added BIGINT, max_queued BIGINT) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    queued BIGINT;
BEGIN
    queued := atp_count_in(added, max_queued, true);
    IF added > 0 THEN
        PERFORM pg_notify('atp_tasks', coalesce(current_schema(), ''));
    END IF;
    RETURN queued;
END
$$;
