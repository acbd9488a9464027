-- Search by identifier prefix (TaskFilter::identifier_prefix) as a range
-- of this index. COLLATE "C" compares bytes (code points of UTF-8), as
-- SQLite does, so the range `>= prefix AND < next` holds exactly the
-- identifiers starting with the prefix whatever the database's collation;
-- the unique (type_id, identifier) index uses that collation and cannot
-- serve it. One index for both the typed and the untyped search: the type
-- is checked while the range is walked. (Version 6 is taken by another
-- change of the same release.)
CREATE INDEX atp_task_identifier ON atp_task (identifier COLLATE "C");
