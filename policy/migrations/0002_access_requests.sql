-- Access requests: a consumer department asks a provider for an agreement, the
-- provider approves (possibly narrowed) or refuses. The request is kept whole as
-- JSON in `body`; the columns beside it are what lists filter on. `review_by` and
-- `expires_at` are RFC 3339 UTC with the same precision, so text order is time order.
CREATE TABLE IF NOT EXISTS access_requests (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    provider TEXT NOT NULL,
    consumer_department TEXT NOT NULL,
    dataset TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    review_by TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS access_requests_provider ON access_requests (provider, state);
CREATE INDEX IF NOT EXISTS access_requests_consumer ON access_requests (consumer_department, state);
-- Every transition of a request: who, when, the request before and after.
CREATE TABLE IF NOT EXISTS access_request_history (
    request_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT,
    PRIMARY KEY (request_id, seq));
