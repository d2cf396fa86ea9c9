-- Sign-in codes beside the link (package magiclink). POST /login gives the
-- asking browser a cookie holding a random nonce; the token stores the
-- SHA-256 of that nonce and of the code in the email, so that the code
-- works only with the cookie. attempts counts code tries (every one, right
-- or wrong); at the limit the token is spent, which voids the link too.
-- Tokens sent without a browser (SendLink) have neither hash.
ALTER TABLE login_tokens ADD COLUMN nonce_hash BLOB;
ALTER TABLE login_tokens ADD COLUMN code_hash BLOB;
ALTER TABLE login_tokens ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX login_tokens_nonce_hash ON login_tokens (nonce_hash);
