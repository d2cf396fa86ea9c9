-- Pages are ordered by creation time and public id, so that a cursor holds
-- nothing but the client's own data (seq is table-wide: a cursor carrying it
-- told every client how many favorites all users had saved).
CREATE INDEX favorites_user_created ON favorites (user_id, created_at, id);
DROP INDEX favorites_user_seq;
