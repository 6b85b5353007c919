-- Proof-of-work challenges already spent (replay protection), kept until they expire.
CREATE TABLE challenge_uses (
    challenge  TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX challenge_uses_expiry ON challenge_uses (expires_at);
