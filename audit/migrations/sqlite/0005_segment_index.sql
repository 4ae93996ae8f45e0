-- The search index leaves the commit path (issue 15). A group commit appends only
-- `seq, hash, record`: with the searchable fields in indexed columns, every record of
-- a commit dirtied an unrelated page of three B-trees (subjects arrive at random), and
-- every commit wrote those pages again. Instead, once `audit_index_segment.records`
-- records past the last indexed segment are committed, the writer indexes them in one
-- sorted bulk insert: a segment. Search and the reports read the index for indexed
-- segments and scan the records themselves past them; `audit verify` checks every
-- indexed segment's entries against its records.
DROP INDEX IF EXISTS audit_log_time;
DROP INDEX IF EXISTS audit_log_subject;
DROP INDEX IF EXISTS audit_log_case_id;
DROP INDEX IF EXISTS audit_log_operator;
ALTER TABLE audit_log DROP COLUMN time;
ALTER TABLE audit_log DROP COLUMN consumer;
ALTER TABLE audit_log DROP COLUMN operator;
ALTER TABLE audit_log DROP COLUMN dataset;
ALTER TABLE audit_log DROP COLUMN subject;
ALTER TABLE audit_log DROP COLUMN matter;
ALTER TABLE audit_log DROP COLUMN case_id;
ALTER TABLE audit_log DROP COLUMN decision;
-- Records per segment. The writer reads it when it starts; readers need only the
-- segments' bounds below.
CREATE TABLE audit_index_segment (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    records INTEGER NOT NULL CHECK (records > 0));
INSERT INTO audit_index_segment (id, records) VALUES (1, 4096);
-- Indexed segments: records first_seq..=last_seq have their entries in audit_index.
CREATE TABLE audit_segment (
    first_seq INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL);
-- One entry per record and indexed member (`col` is its place in the search columns:
-- 0 time, 2 operator, 4 subject, 6 case_id), under its segment's first_seq: a new
-- segment's entries sort after every older one, so indexing it appends to the B-tree.
CREATE TABLE audit_index (
    seg INTEGER NOT NULL,
    col INTEGER NOT NULL,
    value TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (seg, col, value, seq)) WITHOUT ROWID;
