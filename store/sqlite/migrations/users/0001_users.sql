-- Accounts, the base every feature's tables refer to. Emails are stored
-- lowercased and unique. verified_at is set the first time a login link (or
-- code) sent to the address is used (package magiclink); an account that a
-- paid sign-up created stays unverified until then.
CREATE TABLE users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    email       TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    verified_at TIMESTAMP
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
