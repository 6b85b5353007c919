-- Leads (one per normalised email) and their submissions.
-- Timestamps are milliseconds since the Unix epoch (BIGINT) so both engines store them alike.
CREATE TABLE leads (
    id                    TEXT PRIMARY KEY,
    email                 TEXT NOT NULL UNIQUE,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    submission_count      BIGINT NOT NULL DEFAULT 0,
    -- submissions not flagged as spam; leads with none are hidden from lists and exports
    real_submission_count BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX leads_created ON leads (created_at, id);

CREATE TABLE submissions (
    id              TEXT PRIMARY KEY,
    lead_id         TEXT NOT NULL REFERENCES leads (id),
    form_id         TEXT NOT NULL,
    email           TEXT NOT NULL,
    fields          TEXT NOT NULL,
    extra           TEXT NOT NULL,
    spam_reason     TEXT,
    idempotency_key TEXT,
    utm_source      TEXT,
    utm_medium      TEXT,
    utm_campaign    TEXT,
    utm_term        TEXT,
    utm_content     TEXT,
    referrer        TEXT,
    landing_page    TEXT,
    user_agent      TEXT,
    attribution     TEXT NOT NULL,
    client_ip       TEXT,
    created_at      BIGINT NOT NULL,
    UNIQUE (form_id, idempotency_key)
);
CREATE INDEX submissions_lead ON submissions (lead_id, created_at);
CREATE INDEX submissions_form_created ON submissions (form_id, created_at);
CREATE INDEX submissions_created ON submissions (created_at, id);
