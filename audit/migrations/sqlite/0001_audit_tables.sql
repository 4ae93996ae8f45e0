-- The audit chain, its signed checkpoints and the ranges moved to archive files.
-- IF NOT EXISTS: a database made before migrations already has these tables.
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    checkpoint TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_archive (
    from_seq INTEGER PRIMARY KEY,
    to_seq INTEGER NOT NULL,
    last_hash TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL);
