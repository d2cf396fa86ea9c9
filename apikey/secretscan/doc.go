// Package secretscan is the endpoint of GitHub's secret scanning partner
// program for apikit keys: when someone pushes one of your customers' API
// keys to a public repository (or pastes it in an issue, a gist, …),
// GitHub posts it to this endpoint within seconds, and the key is revoked
// at once, its owner told where it was found, and the event audited.
//
// # What the handler does
//
// [Handler] accepts GitHub's POST, whose body is a JSON array of reports
//
//	[{"token":"fav_live_…","type":"fav_live_api_key","url":"https://github.com/…","source":"content"}]
//
// It first checks GitHub's signature: the Github-Public-Key-Signature
// header is a base64 ASN.1 ECDSA P-256 signature of the SHA-256 of the
// raw body, by the key named in Github-Public-Key-Identifier, one of the
// keys GitHub publishes at [DefaultKeysURL]. Those keys are fetched once,
// cached, and fetched again when a request names a key id not in the
// cache (at most once per [Options.MinRefreshInterval], so that a flood of
// made-up key ids cannot make the server hammer GitHub) or when they are
// older than [Options.KeysTTL]. A request that is unsigned, signed by an
// unknown key or mis-signed is refused with 401, and nothing else happens:
// no report is read, no key looked up.
//
// For each report of a signed request, [apikey.LeakResponder] checks
// whether the token is a key of ours (its id is known and its secret
// matches the stored hash), revokes it if it is live, notifies the owner
// once with the report's url, and writes the audit events. The answer is
// GitHub's feedback format, one entry per report:
//
//	[{"token_raw":"fav_live_…","token_type":"fav_live_api_key","label":"true_positive"}]
//
// where "true_positive" means the token is a key we issued (live or not)
// and "false_positive" that it is not. If any report could not be handled
// (the store or the mailer failed), the handler answers 503 so that GitHub
// delivers the request again; handling is idempotent, so a redelivered or
// replayed request revokes nothing twice and mails nobody twice.
//
// GitHub's signature covers the body only, with no timestamp or nonce, so
// a captured request can be replayed as it is; that is harmless because
// the handler is idempotent, and nothing in the answer is news to whoever
// holds the body.
//
// # Cross-origin requests
//
// This is a machine-to-machine endpoint authenticated by GitHub's
// signature, not by cookies: a browser holds no credential that would make
// a forged cross-origin request do anything, and a request without a valid
// signature is refused. So the handler does not apply
// http.CrossOriginProtection, as apikit's browser-facing handlers do; do
// not wrap it in session or CSRF middleware either. Mount it outside any
// authentication middleware, with a per-client rate limit if you like.
//
// # Registering with GitHub
//
// The partner program is free; registration is by email to GitHub
// (see GitHub's documentation "Secret scanning partner program"). Send:
//
//  1. The token types and their patterns. For the example application's
//     keys, the types "fav_live_api_key" and "fav_test_api_key" and the
//     patterns [TokenPattern] gives:
//
//     fav_live_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}
//     fav_test_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}
//
//     (prefix, "_", 12-character id, "_", 32-character secret and 6
//     check characters, all base62). The check characters let you
//     confirm GitHub's matches cheaply; GitHub may ask for a boundary
//     such as \b around the pattern.
//
//  2. The endpoint URL, such as https://api.example.com/github/secret-scanning
//     (the example application mounts [Handler] at POST
//     /github/secret-scanning). It must be reachable from GitHub over
//     https.
//
//  3. A test token of each type, issued for a throwaway account, so that
//     GitHub can check the endpoint end to end.
//
// Test keys ("fav_test") are worth registering too: they reveal a
// customer's integration, and a leaked test key is often a sign that the
// live one sits next to it.
//
// GitHub signs with the keys it publishes at [DefaultKeysURL]; tests and
// staging point [Options.KeysURL] at a key server of their own.
package secretscan
