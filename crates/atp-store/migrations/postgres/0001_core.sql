-- ATP core schema (PostgreSQL). Mirrors migrations/sqlite/0001_core.sql.

CREATE TABLE atp_task_type (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           TEXT             NOT NULL UNIQUE,
    handler        TEXT             NOT NULL,
    timeout_secs   DOUBLE PRECISION NOT NULL CHECK (timeout_secs > 0),
    retention_secs DOUBLE PRECISION NOT NULL,
    max_starts     INTEGER          NOT NULL CHECK (max_starts >= 1),
    created_at     TIMESTAMPTZ      NOT NULL,
    updated_at     TIMESTAMPTZ      NOT NULL
);

CREATE TABLE atp_task (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type_id          BIGINT           NOT NULL REFERENCES atp_task_type (id),
    identifier       TEXT             NOT NULL,
    status           SMALLINT         NOT NULL CHECK (status BETWEEN 1 AND 6),
    inserted_at      TIMESTAMPTZ      NOT NULL,
    updated_at       TIMESTAMPTZ      NOT NULL,
    enqueued_at      TIMESTAMPTZ      NOT NULL,
    starts           INTEGER          NOT NULL DEFAULT 0,
    lease            BIGINT           NOT NULL DEFAULT 0,
    holder           BIGINT,
    progress_percent DOUBLE PRECISION,
    progress_message TEXT,
    input            TEXT             NOT NULL,
    UNIQUE (type_id, identifier)
);

CREATE INDEX atp_task_queue ON atp_task (enqueued_at, id) WHERE status = 1;
CREATE INDEX atp_task_updated ON atp_task (updated_at, id);
CREATE INDEX atp_task_status_updated ON atp_task (status, updated_at, id);
CREATE INDEX atp_task_type_status_updated ON atp_task (type_id, status, updated_at, id);

CREATE TABLE atp_task_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id BIGINT      NOT NULL REFERENCES atp_task (id) ON DELETE CASCADE,
    time    TIMESTAMPTZ NOT NULL,
    status  SMALLINT    NOT NULL,
    message TEXT        NOT NULL
);
CREATE INDEX atp_task_log_task ON atp_task_log (task_id, id);

CREATE TABLE atp_task_response (
    task_id   BIGINT PRIMARY KEY REFERENCES atp_task (id) ON DELETE CASCADE,
    mime_type TEXT        NOT NULL,
    encoding  SMALLINT    NOT NULL,
    body      BYTEA       NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE atp_queue_counter (
    name  TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO atp_queue_counter (name, value) VALUES ('in', 0), ('out', 0);
