-- Login links (package magiclink). Only the SHA-256 of each emailed token
-- is stored; a token is spent by setting used_at, in the same statement
-- that checks it. Tokens are issued to an address, not to an account, so
-- that asking for a link creates no account before the address is proven.
CREATE TABLE login_tokens (
    token_hash BYTEA PRIMARY KEY,
    email      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX login_tokens_email ON login_tokens (email);
CREATE INDEX login_tokens_expires_at ON login_tokens (expires_at);

-- Browser sessions, keyed by the SHA-256 of the cookie's session id.
CREATE TABLE sessions (
    id_hash      BYTEA PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
