-- Proof of an email address (package magiclink). verified_at is set the
-- first time a login link (or code) sent to the address is used; an account
-- that a paid sign-up created stays unverified until then, and its first
-- proof ends every session that existed before it. Accounts created before
-- this migration start unverified: each is signed out once, at its next
-- sign-in.
ALTER TABLE users ADD COLUMN verified_at TIMESTAMP;

-- Login tokens are issued to an address, not to an account, so that asking
-- for a link (or signing up) creates no account before the address is
-- proven. Outstanding links from before this migration stop working.
DROP TABLE login_tokens;
CREATE TABLE login_tokens (
    token_hash BLOB PRIMARY KEY,
    email      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at    TIMESTAMP
) WITHOUT ROWID;
CREATE INDEX login_tokens_email ON login_tokens (email);
CREATE INDEX login_tokens_expires_at ON login_tokens (expires_at);
