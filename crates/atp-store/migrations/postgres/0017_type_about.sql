-- What a task type tells its users (issue 14; atp_core::TypeAbout): title,
-- description, keywords, version, input and output JSON Schemas, the
-- longest synchronous wait, as one JSON text; NULL when none is set.
-- Mirrors migrations/sqlite/0010_type_about.sql.
ALTER TABLE atp_task_type ADD COLUMN about text;
-- The revision of the input schema (0: none; TypeAbout::input_schema_rev).
-- An enqueue names the revision it checked its inputs against, and the
-- insert joins on it: an input checked against a schema that changed
-- meanwhile finds no type and is refused (TypeChanged), never stored.
ALTER TABLE atp_task_type ADD COLUMN input_schema_rev bigint NOT NULL DEFAULT 0;
