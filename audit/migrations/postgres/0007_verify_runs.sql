-- Each `tongban audit verify` run's outcome, so the health API and console can show
-- the last one. Outside the tree: a convenience for officers, not evidence.
CREATE TABLE IF NOT EXISTS audit_verify_run (
    id BIGSERIAL PRIMARY KEY,
    finished_at TEXT NOT NULL,
    ok BOOLEAN NOT NULL,
    records BIGINT NOT NULL,
    head_seq BIGINT NOT NULL,
    summary TEXT NOT NULL);
