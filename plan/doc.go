// Package plan says what each customer may use — rate limits, a quota per
// period, scopes, metered billing — and decides every request against all
// of it in one step.
//
// # Plans are data
//
// A [Plan] names the Stripe prices that grant it, the scopes it grants,
// one to [MaxLimits] rate limits ([ratelimit.Limit], such as "10/s" and
// "1000/h"), an optional [Quota] ("10000/month": units per Day, Month or
// the subscription's BillingPeriod), whose budget it is ([PerUser], shared
// by all of a user's keys so that more keys do not buy more budget, or
// [PerKey]) and whether it is [Plan].Metered (and to which Stripe meter,
// [Plan].MeterEvent). A [Catalog] validates a set
// of plans and finds them by name, by price, and the free plan (the one
// without prices, for users without a subscription). Plans are declared in
// Go with [NewCatalog] or read from a JSON file with [ReadCatalog], and
// printed back in the same format with [Catalog.WriteTo].
//
// # One decision per request
//
// A [Decider] takes a [Request] — plan, user and key ids, cost — and
// admits it only if every limit and the quota admit its cost, spending the
// cost from all of them; a refused request spends nothing. The [Decision]
// reports every policy's remaining units and reset, which is closest to
// exhaustion, and whether a refusal is [RateLimited] or [QuotaExceeded]
// (then Retry-After is the next refill). [Memory] decides in this process
// without allocating; package plan/redisplan decides in Redis in one
// round trip, so that a fleet shares budgets. Both pass the conformance
// suite in package plan/plantest.
//
// Costs: Request.Cost weighs a request (a write may cost 5, a read 1).
// When the cost is only known after the handler ran, decide with
// Request.Deferred (admitted if every policy has a unit left, nothing
// spent), run the handler, then [Decider].Charge the real cost, which may
// overdraw: a quota goes over by less than one request's cost per request
// admitted and not yet charged, and the next requests wait until it
// refills.
//
// Limits refill steadily (GCRA, as in package ratelimit); a quota refills
// all at once at its period's end: midnight UTC for Day, the first of the
// month for Month, and for BillingPeriod the subscription's anchor each
// month, clamped to short months as Stripe does ([Period.Bounds]). Per
// identity [Overrides] replace a plan's limits or quota.
//
// # Durable quotas
//
// A [Flusher] makes quotas survive restarts and lost Redis data: deciders
// record admitted usage in it (in memory), it adds the totals to a
// [UsageStore] in batches every interval and on Close, and deciders
// restore a counter they do not hold from it. A graceful shutdown loses
// nothing; a crash loses at most one interval of usage.
//
// # The wire
//
// [Decision.WriteHeaders] sets RateLimit-Policy and RateLimit
// (draft-ietf-httpapi-ratelimit-headers), each listing every policy on one
// field line, and X-RateLimit-* for the one closest to exhaustion,
// consistently with [ratelimit.Middleware]. [WriteRefused] answers 429 with an RFC 9457
// problem: type [QuotaExceededType] with the plan's name for a spent
// quota, "rate_limited" for a rate limit.
//
// [Middleware] does all of it for every request: it builds the Request
// with a function of the application's (the plan and identity, typically
// from the API key's principal and the user's subscription; plan imports
// neither), decides, sets the headers, and refuses or calls the handler,
// which finds the decision with [DecisionFrom] (GET /v1/me). A cost known
// only after the handler ran is set with [SetCost] on a request the
// middleware was told is deferred ([MiddlewareOptions].Deferred), and
// charged when the handler returns. [Decider.Peek] reports an identity's
// budgets without spending, for a dashboard.
package plan
