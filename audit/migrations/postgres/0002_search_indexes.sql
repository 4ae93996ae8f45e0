-- Indexes on the search columns (PostgreSQL's audit_log has had the columns from
-- the start). `time` doubles as the range index.
CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (time);
CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject);
CREATE INDEX IF NOT EXISTS audit_log_case_id ON audit_log (case_id);
CREATE INDEX IF NOT EXISTS audit_log_operator ON audit_log (operator);
