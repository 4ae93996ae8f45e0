-- The audit chain with its search columns, its signed checkpoints and the ranges
-- moved to archive files. The search columns are copies of fields of the record,
-- outside the hash: search re-checks every hit against its record.
-- IF NOT EXISTS: a database made before migrations already has these tables.
CREATE TABLE IF NOT EXISTS audit_log (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    record TEXT NOT NULL,
    time TEXT, consumer TEXT, operator TEXT, dataset TEXT, subject TEXT,
    matter TEXT, case_id TEXT, decision TEXT);
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    checkpoint TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_archive (
    from_seq BIGINT PRIMARY KEY,
    to_seq BIGINT NOT NULL,
    last_hash TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL);
