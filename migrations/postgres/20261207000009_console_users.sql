-- The marketer's console: people who sign in, their server-side sessions, and one-time
-- sign-in links (the set-up link has no user yet: it creates the first admin).
CREATE TABLE users (
    id             TEXT COLLATE "C" PRIMARY KEY,
    email          TEXT COLLATE "C" NOT NULL UNIQUE,
    role           TEXT NOT NULL,
    -- Argon2id (PHC string); NULL until the person sets one (they sign in with links).
    password_hash  TEXT,
    created_at     BIGINT NOT NULL,
    last_sign_in_at BIGINT
);

-- Sessions are looked up by a SHA-256 of the cookie's value: a copy of the table signs no one in.
CREATE TABLE console_sessions (
    id_hash      TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
CREATE INDEX console_sessions_seen ON console_sessions (last_seen_at);

CREATE TABLE sign_in_links (
    token_hash TEXT COLLATE "C" PRIMARY KEY,
    -- NULL: the set-up link, which creates the first admin.
    user_id    TEXT COLLATE "C" REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX sign_in_links_user ON sign_in_links (user_id);
