// Package apikey issues, verifies and revokes bearer API keys, and
// authenticates HTTP requests with them.
//
// # Keys
//
// A key looks like
//
//	fav_live_4tQ2x9LmZpB7_Rk2hX8wVd0qL3mNpT7yBc5zGj1sFa9eU0Qp2Lm
//	└──┬───┘ └────┬─────┘ └───────────────┬──────────────┘└─┬──┘
//	  prefix    key id               secret            check
//
// The prefix tells people and secret scanners what the key is and whether
// it is live or test; the 12-character id is public and is the only lookup;
// the 32-character secret (about 190 random bits) is stored only as a
// SHA-256 hash; the 6-character check is a CRC32 that lets [Parse] reject
// typos and garbage without touching the store. See [Token].
//
// A [Manager] issues keys and shows each token once, lists, rolls (with a
// grace period for the old secret), deactivates and revokes them. A
// [Verifier] checks tokens through a bounded in-memory cache, so that a hot
// key costs no store round trip, and writes last-use times in batches off
// the request path. Both work over a [Store]; the store packages of this
// module provide one for SQLite and PostgreSQL.
//
// # HTTP
//
// [Middleware] authenticates requests. It reads the key from
// "Authorization: Bearer <token>" or "X-API-Key: <token>" (and, only if
// [MiddlewareOptions.AcceptLegacyBase64] is set, the FavoritesAPI seed's
// legacy "Authorization: Bearer base64(<id>:<secret>)"), refuses keys sent
// in the URL query, and answers as RFC 6750 says: 401 with a
// WWW-Authenticate challenge for a missing or invalid key, 403 for a valid
// key that lacks a scope or that [MiddlewareOptions.Authorize] refuses, and
// 503 if the store cannot be reached (it fails closed). Error bodies are RFC
// 9457 problem documents. Handlers find the caller with [PrincipalFrom].
// The Middleware verifies through the Verifier's public methods
// ([Verifier.VerifyToken], [Verifier.VerifySecret]); an application with
// its own transport can do the same.
//
// [RequireScopes] checks per route the scopes of the key the Middleware
// already verified, without verifying it again. Mount it after Middleware
// and before a rate limiter, so that a refused request spends no budget:
//
//	authn → RequireScopes → rate limit → handler
//
// [MiddlewareOptions.LookupLimiter] limits per client the verifications that
// reach the store, so that forged keys (well formed: the checksum is
// public) cannot flood the database; keys served from the cache never
// spend it, and a client over its budget gets 429 before any store query.
//
// # Owned keys
//
// An application's dashboard acts on keys for its signed-in user. The
// [Manager] methods ending in Owned ([Manager.GetOwned],
// [Manager.RevokeOwned], [Manager.RollOwned], [Manager.RenameOwned]) take
// that user's id and answer [ErrNotFound] for a key of another user, exactly
// as for a key that does not exist, so the check cannot be forgotten and
// reveals nothing.
//
// # Staleness
//
// A change made through a [Manager] linked to a [Verifier]
// ([ManagerOptions.Verifier]) takes effect in that Verifier at once. A change
// made through another instance takes effect within
// [VerifierOptions.CacheTTL] (30 seconds by default); choose the TTL as the
// longest time a revoked key may keep working on other instances. While the
// store is unreachable, keys verified within the TTL keep working and others
// are refused with 503.
package apikey
