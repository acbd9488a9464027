-- PostgreSQL only (SQLite's single writer needs no such thing).
--
-- Counts tasks into the queue inside the caller's transaction and raises
-- when that overfills it. A function so that a producer can pipeline BEGIN,
-- its insert, this check and COMMIT in one round trip: a full queue raises
-- SQLSTATE AQ001, which aborts the transaction and turns the pipelined
-- COMMIT into a rollback.
--
-- Each statement of a VOLATILE function takes a fresh snapshot, so the
-- 'out' read happens after the 'in' row lock is held: `in - out` is exact
-- even with many producers and claimers at once.
CREATE FUNCTION atp_count_in(added BIGINT, max_queued BIGINT) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    entered BIGINT;
    departed BIGINT;
BEGIN
    UPDATE atp_queue_counter SET value = value + added WHERE name = 'in'
        RETURNING value INTO entered;
    IF max_queued > 0 THEN
        SELECT value INTO departed FROM atp_queue_counter WHERE name = 'out';
        IF entered - departed > max_queued THEN
            RAISE EXCEPTION 'the queue is full (% tasks)', max_queued USING ERRCODE = 'AQ001';
        END IF;
    END IF;
    RETURN entered;
END
$$;
