-- Search by identifier prefix (TaskFilter::identifier_prefix) as a range
-- of this index in byte order (BINARY collation), whatever the type. An
-- identifier never changes, so SQLite writes this index only at insert.
-- (Version 3 is taken by another change of the same release.)
CREATE INDEX atp_task_identifier ON atp_task (identifier);
