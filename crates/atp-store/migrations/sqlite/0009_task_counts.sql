-- Operator views stay cheap (issue 13): counts by type and status read this
-- small table instead of counting atp_task, so `atp stats`, /api/v1/stats
-- and the dashboard's live counts cost the same with 10 or 10,000,000
-- tasks. Triggers keep it exact in the same transaction as every insert,
-- status change and delete of a task (SQLite has one writer at a time, so
-- updating the rows in place makes no one wait).
CREATE TABLE atp_task_count (
    type_id INTEGER NOT NULL,
    status INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (type_id, status)
) WITHOUT ROWID;

INSERT INTO atp_task_count (type_id, status, n)
    SELECT type_id, status, count(*) FROM atp_task GROUP BY type_id, status;

CREATE TRIGGER atp_task_counted_insert AFTER INSERT ON atp_task
BEGIN
    INSERT INTO atp_task_count (type_id, status, n) VALUES (NEW.type_id, NEW.status, 1)
        ON CONFLICT (type_id, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER atp_task_counted_delete AFTER DELETE ON atp_task
BEGIN
    UPDATE atp_task_count SET n = n - 1 WHERE type_id = OLD.type_id AND status = OLD.status;
END;

CREATE TRIGGER atp_task_counted_update AFTER UPDATE OF status ON atp_task
    WHEN OLD.status <> NEW.status
BEGIN
    UPDATE atp_task_count SET n = n - 1 WHERE type_id = OLD.type_id AND status = OLD.status;
    INSERT INTO atp_task_count (type_id, status, n) VALUES (NEW.type_id, NEW.status, 1)
        ON CONFLICT (type_id, status) DO UPDATE SET n = n + 1;
END;
