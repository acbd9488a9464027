-- Operator views stay cheap (issue 13): counts by type and status (`atp
-- stats`, /api/v1/stats, the dashboard's live counts, asked for once a
-- second by every open tab) read a small table instead of counting
-- atp_task, so they cost the same with 10 or 10,000,000 tasks.
--
-- Every statement that inserts, updates or deletes task rows appends the net
-- change per (type, status) to atp_task_count_delta (statement-level
-- triggers with transition tables: one small insert per statement, however
-- many rows). Appending takes no row lock, so writers never wait on each
-- other for it and it can take part in no lock cycle (a counter row updated
-- in place by every transition would serialize them, as the queue counter
-- did before its shards). Readers fold the deltas into atp_task_count
-- first (`task_counts`, and the daemons' retention clean-up, so that the
-- deltas stay few when nobody reads), in one statement that deletes the
-- deltas it adds: two folds at once add each delta once.
CREATE TABLE atp_task_count (
    type_id BIGINT NOT NULL,
    status SMALLINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (type_id, status)
);

CREATE TABLE atp_task_count_delta (
    type_id BIGINT NOT NULL,
    status SMALLINT NOT NULL,
    n BIGINT NOT NULL
);
ALTER TABLE atp_task_count_delta SET (
    autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE atp_task_count SET (
    autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_cost_delay = 0, fillfactor = 50);

-- The counts as they are, with writers held off while they are taken and
-- the triggers made (the migration's transaction ends the lock).
LOCK TABLE atp_task IN SHARE MODE;
INSERT INTO atp_task_count (type_id, status, n)
    SELECT type_id, status, count(*) FROM atp_task GROUP BY type_id, status;

CREATE FUNCTION atp_task_counted_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO atp_task_count_delta (type_id, status, n)
        SELECT type_id, status, count(*) FROM atp_new GROUP BY type_id, status;
    RETURN NULL;
END
$$;

CREATE FUNCTION atp_task_counted_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO atp_task_count_delta (type_id, status, n)
        SELECT type_id, status, -count(*) FROM atp_old GROUP BY type_id, status;
    RETURN NULL;
END
$$;

-- Heartbeats and progress update rows without changing their status: their
-- net change is zero and nothing is appended.
CREATE FUNCTION atp_task_counted_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO atp_task_count_delta (type_id, status, n)
        SELECT type_id, status, sum(d) FROM (
            SELECT type_id, status, -1 AS d FROM atp_old
            UNION ALL
            SELECT type_id, status, 1 AS d FROM atp_new
        ) moved
        GROUP BY type_id, status HAVING sum(d) <> 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER atp_task_counted_insert AFTER INSERT ON atp_task
    REFERENCING NEW TABLE AS atp_new
    FOR EACH STATEMENT EXECUTE FUNCTION atp_task_counted_insert();
CREATE TRIGGER atp_task_counted_delete AFTER DELETE ON atp_task
    REFERENCING OLD TABLE AS atp_old
    FOR EACH STATEMENT EXECUTE FUNCTION atp_task_counted_delete();
CREATE TRIGGER atp_task_counted_update AFTER UPDATE ON atp_task
    REFERENCING OLD TABLE AS atp_old NEW TABLE AS atp_new
    FOR EACH STATEMENT EXECUTE FUNCTION atp_task_counted_update();
