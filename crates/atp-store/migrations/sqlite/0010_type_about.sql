-- What a task type tells its users (issue 14; atp_core::TypeAbout), as one
-- JSON text (NULL when none is set), and the revision of its input schema
-- (0: none), which an enqueue checks against the one its inputs were
-- checked against. Mirrors migrations/postgres/0017_type_about.sql.
ALTER TABLE atp_task_type ADD COLUMN about TEXT;
ALTER TABLE atp_task_type ADD COLUMN input_schema_rev INTEGER NOT NULL DEFAULT 0;
