// Package ratelimit limits how often clients may call an API — per API key,
// per client address, per plan, or for the whole API — as net/http
// middleware that tells clients their limits in standard headers.
//
// # Limits
//
// A [Limit] is a rate and a burst, written as in configuration files:
//
//	ratelimit.MustParseLimit("100/min")          // 100 at once, then one every 600ms
//	ratelimit.MustParseLimit("50/15m")           // 50 per 15 minutes
//	ratelimit.MustParseLimit("100/min burst 20") // same rate, at most 20 at once
//
// Limiters use the generic cell rate algorithm (GCRA), a token bucket: a
// client can spend its whole burst at once, and quota comes back steadily,
// so there are no window edges at which a client can send twice its limit.
//
// # Limiters
//
// A [Limiter] decides for a key and a limit. [Memory] keeps state in the
// process, sharded, with a hard cap on the number of keys; it suits one
// server instance. Package ratelimit/redislimit keeps state in Redis, so
// that a fleet of instances enforces one limit together: exactly, with one
// round trip per decision (redislimit.New), or from a local budget synced
// in the background, with a bounded overshoot (redislimit.NewLocal).
// Memory and the exact Redis limiter make the same [Decision] for the
// same sequence of requests.
//
// # Middleware
//
// [Middleware] limits each request by the key its KeyFunc returns, sets
// RateLimit-Policy, RateLimit (draft-ietf-httpapi-ratelimit-headers-10),
// X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset on every
// response, and answers refused requests with 429, Retry-After and an
// RFC 9457 problem document without calling the handler.
//
// The seed application limits each API key to 100 requests a minute, and
// the whole API to 50 requests per 15 minutes. Put the per-key limit
// outside the global one, so that a runaway client is refused before it
// uses up everyone's global quota (ExampleMiddleware runs this, with a
// header standing in for the key id):
//
//	limiter := ratelimit.NewMemory(ratelimit.MemoryOptions{})
//	perKey := ratelimit.Middleware(limiter, ratelimit.MiddlewareOptions{
//		Policy: "per-key",
//		Limit:  ratelimit.MustParseLimit("100/min"),
//		// The id of the API key that authenticated the request, which the
//		// authentication middleware put in the context.
//		KeyFunc: apiKeyID,
//	})
//	global := ratelimit.Middleware(limiter, ratelimit.MiddlewareOptions{
//		Policy:  "global",
//		Limit:   ratelimit.MustParseLimit("50/15m"),
//		KeyFunc: func(*http.Request) (string, error) { return "all", nil },
//	})
//	mux.Handle("/api/", authenticate(perKey(global(api))))
//
// Responses then carry both policies, and the X-RateLimit fields describe
// the more restrictive one:
//
//	RateLimit-Policy: "per-key";q=100;w=60
//	RateLimit-Policy: "global";q=50;w=900
//	RateLimit: "per-key";r=99;t=1
//	RateLimit: "global";r=49;t=18
//
// Per-plan limits come from a [LimitFunc]; unauthenticated routes can be
// limited by client address with [IPKey] (or [ClientKey], its infallible
// form), which reads X-Forwarded-For, Forwarded or X-Real-IP — the one the
// proxies set — only from trusted proxies ([ParseTrustedProxies] reads them
// from a setting).
//
// # A fleet
//
// For several instances behind a load balancer, give every instance a
// Limiter over the same Redis; nothing else changes:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "10.0.0.5:6379", ContextTimeoutEnabled: true})
//	limiter := redislimit.New(rdb, redislimit.Options{Prefix: "favoritesapi:"})
//
// Each decision is one round trip, bounded by redislimit.Options.Timeout
// (100ms). If Redis fails, the limiter fails open by default (allows, logs
// and counts); with FailClosed the middleware answers 503. Limits that must
// hold even then (sign-in, sign-up, failed authentications) wrap a
// fail-closed Redis limiter in [Fallback], which decides in memory while
// Redis is down.
//
// # Observing
//
// Every limiter here has a Stats method that returns a [Stats] snapshot:
// decisions allowed and limited, errors, decisions that failed open, keys
// tracked in memory, keys expired, new keys refused at a full limiter, and
// decisions made by a [Fallback] while its primary was down, for expvar or
// Prometheus text format. [MiddlewareOptions].Logger logs each refusal.
package ratelimit
