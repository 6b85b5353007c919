-- API keys for machines: each with a name, the scopes it may use, and only a SHA-256 of its
-- secret (a copy of the table opens nothing). Revoked keys are kept, marked, for the record.
CREATE TABLE api_keys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT NOT NULL,
    -- The first characters of the key, shown in lists so a person can tell keys apart.
    prefix       TEXT NOT NULL,
    token_hash   TEXT COLLATE "C" NOT NULL UNIQUE,
    -- Space-separated, e.g. 'leads:read stats:read'.
    scopes       TEXT NOT NULL,
    -- Who made it: 'cli', or the console account's address.
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
