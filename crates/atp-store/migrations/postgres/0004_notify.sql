-- PostgreSQL only (SQLite wakes waiters in process).
--
-- atp_count_in as in 0003, and it also announces the new tasks: a
-- notification on channel 'atp_tasks' whose payload is the schema the
-- tasks went into (current_schema(), '' when there is none), so that idle
-- daemons listening for that schema claim at once instead of at their next
-- poll. NOTIFY is transactional: it is delivered at commit, dropped on
-- rollback (a full queue, a duplicate), and sent once per transaction
-- however many times it is called with the same payload.
CREATE OR REPLACE FUNCTION atp_count_in(added BIGINT, max_queued BIGINT) RETURNS BIGINT
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
    IF added > 0 THEN
        PERFORM pg_notify('atp_tasks', coalesce(current_schema(), ''));
    END IF;
    RETURN entered;
END
$$;
