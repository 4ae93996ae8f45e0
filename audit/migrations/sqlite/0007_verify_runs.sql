-- Each `tongban audit verify` run's outcome, so the health API and console can show
-- the last one. Outside the tree: a convenience for officers, not evidence.
CREATE TABLE IF NOT EXISTS audit_verify_run (
    id INTEGER PRIMARY KEY,
    finished_at TEXT NOT NULL,
    ok INTEGER NOT NULL,
    records INTEGER NOT NULL,
    head_seq INTEGER NOT NULL,
    summary TEXT NOT NULL);
