-- Login links (package magiclink). Only the SHA-256 of each emailed token
-- is stored; a token is spent by setting used_at, in the same statement
-- that checks it. Tokens are issued to an address, not to an account, so
-- that asking for a link creates no account before the address is proven.
CREATE TABLE login_tokens (
    token_hash BLOB PRIMARY KEY,
    email      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at    TIMESTAMP
) WITHOUT ROWID;
CREATE INDEX login_tokens_email ON login_tokens (email);
CREATE INDEX login_tokens_expires_at ON login_tokens (expires_at);

-- Browser sessions, keyed by the SHA-256 of the cookie's session id.
CREATE TABLE sessions (
    id_hash      BLOB PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
