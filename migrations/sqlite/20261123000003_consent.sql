-- Consent and delivery: double opt-in state, the append-only consent ledger, download links,
-- the suppression list (hashed addresses only), erasure counts and a generated signing key.
ALTER TABLE submissions ADD COLUMN confirmation TEXT NOT NULL DEFAULT 'none';
-- 'none' (no double opt-in) | 'pending' | 'confirmed'
ALTER TABLE submissions ADD COLUMN confirm_expires_at BIGINT;
ALTER TABLE submissions ADD COLUMN confirmed_at BIGINT;
-- Partial: ordinary submissions (the hot path) never touch this index.
CREATE INDEX submissions_pending ON submissions (confirm_expires_at) WHERE confirmation = 'pending';

-- One row per consent event; rows are only ever added (and removed by erasure or retention).
-- kind: checkbox | double_opt_in | unsubscribe | resubscribe
CREATE TABLE consents (
    id            TEXT PRIMARY KEY,
    lead_id       TEXT NOT NULL REFERENCES leads (id),
    submission_id TEXT,
    form_id       TEXT,
    kind          TEXT NOT NULL,
    field         TEXT,
    text          TEXT,
    text_version  TEXT,
    client_ip     TEXT,
    user_agent    TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX consents_lead ON consents (lead_id, created_at);

-- One per submission that earned a download (id = the submission's id).
CREATE TABLE downloads (
    id               TEXT PRIMARY KEY REFERENCES submissions (id),
    lead_id          TEXT NOT NULL REFERENCES leads (id),
    form_id          TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    download_count   BIGINT NOT NULL DEFAULT 0,
    last_download_at BIGINT,
    resent_at        BIGINT
);
CREATE INDEX downloads_lead ON downloads (lead_id);

-- Addresses that must not get marketing mail, by hash (see consent::suppression_hash).
-- reason: unsubscribed | erased
CREATE TABLE suppressions (
    email_hash TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- What erasure leaves behind: anonymous counts only.
CREATE TABLE erasures (
    id          TEXT PRIMARY KEY,
    erased_at   BIGINT NOT NULL,
    submissions BIGINT NOT NULL,
    forms       TEXT NOT NULL
);

-- The signing key generated when none is configured, shared by every instance.
CREATE TABLE signing_keys (
    id         TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
