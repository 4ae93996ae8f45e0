-- The records' Merkle tree (RFC 9162): each stored hash under tlog's stored-hash
-- index, about two per record, written in the transaction of the records it covers.
-- A log from before this table is caught up from its records when it opens.
CREATE TABLE IF NOT EXISTS audit_tree (
    idx BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL);
