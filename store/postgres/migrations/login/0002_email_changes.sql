-- Pending changes of a user's email address (package magiclink): the
-- SHA-256 of the token emailed to the new address, spent by setting
-- used_at in the same statement that checks it. A user has at most one
-- unused change; the address replaces the old one only when the token is
-- spent.
CREATE TABLE email_changes (
    token_hash BYTEA PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    new_email  TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX email_changes_user_id ON email_changes (user_id);
CREATE INDEX email_changes_expires_at ON email_changes (expires_at);
