-- Mirrors migrations/sqlite/0002_daemons.sql.
CREATE TABLE atp_daemon (
    id           BIGINT      PRIMARY KEY,
    host         TEXT        NOT NULL,
    pid          INTEGER     NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    handlers     TEXT        NOT NULL
);
CREATE INDEX atp_daemon_heartbeat ON atp_daemon (heartbeat_at);
CREATE INDEX atp_task_holder ON atp_task (holder) WHERE status IN (2, 3, 4);
