-- The transactional outbox: one row per message a submission implies, written in the same
-- transaction as the submission. Workers claim due rows with a lease, send, and mark them.
-- status: pending (not tried yet) | failed (tried, will retry at next_attempt_at) | sent
--         | dead (gave up after max_attempts; `inlet outbox retry` revives it)
--         | skipped (not sent on purpose, e.g. a repeat follow-up within the window; see last_error)
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    lead_id         TEXT NOT NULL REFERENCES leads (id),
    submission_id   TEXT NOT NULL REFERENCES submissions (id),
    form_id         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    max_attempts    BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    lease_owner     TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_lead ON outbox (lead_id, form_id, kind, created_at);
