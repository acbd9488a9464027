-- Periodic tasks (issue 11): one row per schedule. `last_enqueued_at` only
-- moves forward, by compare-and-set, in the transaction that enqueues the
-- occurrence's task (postgres/schedule.rs): the exactly-once guard across
-- daemons on every host. Deleting a type deletes its schedules. Mirrors
-- migrations/sqlite/0007_schedules.sql.
CREATE TABLE atp_schedule (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             TEXT        NOT NULL UNIQUE,
    type_id          BIGINT      NOT NULL REFERENCES atp_task_type (id) ON DELETE CASCADE,
    expression       TEXT        NOT NULL,
    timezone         TEXT        NOT NULL,
    input            TEXT        NOT NULL,
    catch_up         TEXT        NOT NULL CHECK (catch_up IN ('last', 'none')),
    paused           BOOLEAN     NOT NULL DEFAULT false,
    last_enqueued_at TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

-- A type's deletion finds its schedules without a scan.
CREATE INDEX atp_schedule_type ON atp_schedule (type_id);
