-- Live daemons: who holds tasks, so that a dead holder's tasks can be rescued
-- long before their type's timeout.
CREATE TABLE atp_daemon (
    id           INTEGER PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    handlers     TEXT    NOT NULL
) STRICT;
CREATE INDEX atp_daemon_heartbeat ON atp_daemon (heartbeat_at);
CREATE INDEX atp_task_holder ON atp_task (holder) WHERE status IN (2, 3, 4);
