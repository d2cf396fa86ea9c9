-- FavoritesAPI's own table: each user's saved links. seq orders them
-- (newest first) and is the pagination cursor; id is the public id.
CREATE TABLE favorites (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    url        TEXT NOT NULL,
    tags       TEXT NOT NULL DEFAULT '[]',
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX favorites_user_seq ON favorites (user_id, seq);
