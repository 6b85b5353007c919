-- Mail to the console's people (a sign-in link they asked for by email), queued like the
-- outbox: claimed with a lease, retried with backoff, given up after the outbox's attempts.
-- Only the account is kept: the link itself is made when the message is sent, and only its
-- hash is stored (in sign_in_links).
CREATE TABLE console_mail (
    id              TEXT COLLATE "C" PRIMARY KEY,
    user_id         TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    lease_owner     TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX console_mail_due ON console_mail (status, next_attempt_at);
CREATE INDEX console_mail_user ON console_mail (user_id);
