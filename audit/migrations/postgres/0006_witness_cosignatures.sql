-- Witnesses' cosignatures of the log's checkpoints (c2sp.org/tlog-cosignature): each
-- row the checkpoint as submitted with the witness's signature line appended.
CREATE TABLE IF NOT EXISTS audit_cosignature (
    witness TEXT NOT NULL,
    size BIGINT NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (witness, size));
