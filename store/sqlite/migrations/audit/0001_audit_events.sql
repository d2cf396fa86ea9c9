-- The security log (package audit): append-only, pruned by time. There is
-- no foreign key on user_id: an account's events, its deletion's among
-- them, outlive the account (store.DeleteUser keeps them). ip is NULL when
-- the event came from no request; detail is a JSON object of strings, NULL
-- when empty. AUTOINCREMENT never reuses an id, so that an export can
-- resume after the last id it wrote.
CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TIMESTAMP NOT NULL,
    kind       TEXT NOT NULL,
    user_id    INTEGER NOT NULL DEFAULT 0,
    actor_kind TEXT NOT NULL,
    actor_id   TEXT NOT NULL DEFAULT '',
    ip         TEXT,
    user_agent TEXT NOT NULL DEFAULT '',
    key_id     TEXT NOT NULL DEFAULT '',
    detail     TEXT
);
CREATE INDEX audit_events_user_id ON audit_events (user_id, id);
CREATE INDEX audit_events_at ON audit_events (at);
