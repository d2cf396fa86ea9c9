-- Pending changes of a user's email address (package magiclink): the
-- SHA-256 of the token emailed to the new address, spent by setting
-- used_at in the same statement that checks it. A user has at most one
-- unused change; the address replaces the old one only when the token is
-- spent.
CREATE TABLE email_changes (
    token_hash BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    new_email  TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at    TIMESTAMP
) WITHOUT ROWID;
CREATE INDEX email_changes_user_id ON email_changes (user_id);
CREATE INDEX email_changes_expires_at ON email_changes (expires_at);
