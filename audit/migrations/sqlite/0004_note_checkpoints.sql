-- Checkpoints become C2SP signed notes of the Merkle tree (the note a batch's
-- receipts carry): `seq` is the tree size, `hash` the chain hash of that record (not
-- signed: the note's root covers every record), `checkpoint` the note's text.
-- Rows written before this migration are JWS checkpoints of the chain head and keep
-- verifying as such: `format` tells them apart.
ALTER TABLE audit_checkpoint ADD COLUMN format TEXT NOT NULL DEFAULT 'jws';
