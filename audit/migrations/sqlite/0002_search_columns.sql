-- Copies of the searchable fields in indexed columns, filled from the records
-- (SQLite's JSON functions read the canonical JSON). They are outside the hash:
-- search re-checks every hit against its record.
ALTER TABLE audit_log ADD COLUMN time TEXT;
ALTER TABLE audit_log ADD COLUMN consumer TEXT;
ALTER TABLE audit_log ADD COLUMN operator TEXT;
ALTER TABLE audit_log ADD COLUMN dataset TEXT;
ALTER TABLE audit_log ADD COLUMN subject TEXT;
ALTER TABLE audit_log ADD COLUMN matter TEXT;
ALTER TABLE audit_log ADD COLUMN case_id TEXT;
ALTER TABLE audit_log ADD COLUMN decision TEXT;
UPDATE audit_log SET time = json_extract(record, '$.time'),
    consumer = json_extract(record, '$.consumer'),
    operator = json_extract(record, '$.operator'),
    dataset = json_extract(record, '$.dataset'),
    subject = json_extract(record, '$.subject'),
    matter = json_extract(record, '$.matter'),
    case_id = json_extract(record, '$.case_id'),
    decision = json_extract(record, '$.decision');
-- `time` doubles as the range index.
CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (time);
CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject);
CREATE INDEX IF NOT EXISTS audit_log_case_id ON audit_log (case_id);
CREATE INDEX IF NOT EXISTS audit_log_operator ON audit_log (operator);
