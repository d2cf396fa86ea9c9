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
// The Middleware verifies as the Verifier's public methods do
// ([Verifier.VerifyToken], [Verifier.VerifySecret]), telling them the
// client's address ([MiddlewareOptions.ClientIP]); an application with its
// own transport does the same with [WithClientAddr].
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
// # Richer keys
//
// At issue time ([IssueOptions]) a key may get an expiry (ExpiresAt, or
// ExpiresIn such as 30, 90 or 365 days), an environment (live or test,
// encoded in its prefix: "fav_live" or "fav_test", see [Key.Environment]),
// a small JSON object of metadata, tags, and a list of networks it may be
// used from. All are returned in the [Principal]. A request with a key
// restricted to networks from elsewhere is refused with 403 and a problem
// of type [AddressNotAllowedType]; behind a reverse proxy, give the
// Middleware a ClientIP that trusts the proxy's header only from the proxy
// (see [MiddlewareOptions.ClientIP]). Metadata, tags and networks need a
// store that keeps them ([AttributeStore]); [Manager.Issue] refuses them
// otherwise, rather than drop a restriction silently.
//
// # Lifecycle
//
// An [ExpiryNotifier], run on every instance, notifies owners 7 days and 1
// day before a key expires, when it expired, and when a rolled key's grace
// period ended — each notice once, across instances and restarts, by
// claiming it in the store first ([NoticeStore], [ExpiryStore]). A
// [LeakResponder] revokes a key reported as found in public, notifies its
// owner once with where it was found, and is idempotent under repeated
// reports; package apikey/secretscan is GitHub's secret scanning partner
// endpoint in front of it. The Manager, the ExpiryNotifier and the
// LeakResponder report what they did as [Event]s to an audit hook
// ([ManagerOptions.Audit]); package audit keeps them.
//
// Package apikeytest has the conformance suite for the store interfaces
// these need ([AttributeStore], [NoticeStore], [NoticePruner],
// [ExpiryStore]) and a store in memory that implements them.
//
// A store may also implement [VerifyStore]: a lookup of only what a
// Verifier reads, which it then uses on every cache miss (the stores of
// package store do; it saves decoding three timestamps per miss).
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
