-- What a user sees of each session on an account page (package magiclink):
-- the browser's User-Agent and the client address, trimmed and capped at
-- 256 characters when the session starts.
ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN ip TEXT NOT NULL DEFAULT '';
