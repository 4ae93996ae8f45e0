-- Agreements, their history, role bindings and usage counters. The same SQL serves
-- SQLite and PostgreSQL (through sqlx's Any driver). IF NOT EXISTS and ON CONFLICT:
-- a database made before migrations already has these tables and the meta row.
CREATE TABLE IF NOT EXISTS policy_meta (
    id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL);
INSERT INTO policy_meta (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS policy_agreements (
    id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    provider TEXT NOT NULL,
    consumer TEXT NOT NULL,
    dataset TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS policy_history (
    version BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT);
CREATE INDEX IF NOT EXISTS policy_history_subject ON policy_history (subject, version);
CREATE TABLE IF NOT EXISTS role_bindings (
    identity TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (identity, role));
CREATE TABLE IF NOT EXISTS policy_counters (
    counter TEXT NOT NULL,
    time_window TEXT NOT NULL,
    n BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    PRIMARY KEY (counter, time_window));
