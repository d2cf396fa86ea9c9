package ratelimit

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apikit/apikit/internal/logthrottle"
)

// KeyFunc returns the key a request is limited by, such as the id of the
// API key that authenticated it (put in the request's context by the
// authentication middleware) or the client's address (see [IPKey]). An
// error makes the middleware answer with MiddlewareOptions.OnError. An
// empty key is a key like any other: all requests with it share one quota.
// The middleware calls it from concurrent requests.
type KeyFunc func(r *http.Request) (string, error)

// LimitFunc returns the limit for a request and its key, for per-key or
// per-plan limits. Returning the zero Limit applies MiddlewareOptions.Limit;
// an error, or an invalid Limit, makes the middleware answer with
// MiddlewareOptions.OnError. The middleware calls it from concurrent
// requests.
type LimitFunc func(r *http.Request, key string) (Limit, error)

// MiddlewareOptions configures [Middleware]. KeyFunc is required, and so is
// a valid Limit unless LimitFunc is set; the zero value of every other
// field gives the default described with it.
type MiddlewareOptions struct {
	// KeyFunc returns the key each request is limited by. It is required,
	// as in go-chi/httprate, so that every use states what it limits by.
	KeyFunc KeyFunc
	// Limit is the limit for every key, unless LimitFunc is set and returns
	// a non-zero Limit.
	Limit Limit
	// LimitFunc, if set, returns the limit for each request.
	LimitFunc LimitFunc
	// Policy names the quota policy in the RateLimit-Policy and RateLimit
	// headers, such as "per-key" or "global"; it must be printable ASCII.
	// The default is the limit in the syntax of [ParseLimit], such as
	// "100/min". The name also separates the limiter's keys: two
	// middlewares with the same policy name share each key's quota. So
	// with a LimitFunc and no Policy, each distinct limit is a policy of
	// its own and a key that changes plan starts with a full bucket; name
	// the policy to carry a key's usage over to its new limit.
	Policy string
	// Cost returns how much of the quota a request uses (see
	// [Limiter].AllowN); nil means 1 for every request.
	Cost func(r *http.Request) int
	// OnLimited writes the response to a refused request; the limit headers
	// and Retry-After are already set. nil means [WriteLimited]: 429 with
	// an RFC 9457 problem document.
	OnLimited func(w http.ResponseWriter, r *http.Request, d Decision)
	// OnError writes the response when the key, the limit or the decision
	// cannot be had. nil means [WriteError]: 503 for errors wrapping
	// [ErrUnavailable], 500 otherwise.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// Now returns the current time, for X-RateLimit-Reset; nil means
	// time.Now.
	Now func() time.Time
	// Logger, if set, receives a line for every refused request (level
	// Info: the policy, the key and the seconds until it would be allowed)
	// and for every request the limiter could not decide on (level Warn,
	// with the error). Keys are cut to 48 bytes; a KeyFunc must not return
	// secrets (an API key's public id, not its token). nil means no
	// logging.
	Logger *slog.Logger
}

// Header names, in the canonical form net/http uses as map keys. HTTP
// header names are case-insensitive: RateLimit-Policy is Ratelimit-Policy.
const (
	headerPolicy     = "Ratelimit-Policy"
	headerRateLimit  = "Ratelimit"
	headerLimit      = "X-Ratelimit-Limit"
	headerRemaining  = "X-Ratelimit-Remaining"
	headerReset      = "X-Ratelimit-Reset"
	headerRetryAfter = "Retry-After"
)

// Middleware returns HTTP middleware that limits requests with l: it asks l
// for a [Decision] on each request's key and limit, sets the limit headers,
// and then calls the wrapped handler if the request is allowed, or
// OnLimited (by default a 429 problem response) if it is not, without
// calling the wrapped handler.
//
// Every response the middleware lets through or refuses carries these
// headers, where the RateLimit fields follow the IETF HTTPAPI working
// group's draft-ietf-httpapi-ratelimit-headers-10 (September 2025):
//
//	RateLimit-Policy: "100/min";q=100;w=60
//	RateLimit: "100/min";r=42;t=25
//	X-RateLimit-Limit: 100
//	X-RateLimit-Remaining: 42
//	X-RateLimit-Reset: 1767225625
//
// q is the limit's Count, w its Period in seconds, and r and
// X-RateLimit-Remaining the [Decision].Remaining. t is the seconds (rounded
// up) until the quota is full again or, on a refused request, until the
// request would be allowed; X-RateLimit-Reset is that moment as a Unix time,
// as GitHub and go-chi/httprate send it. A refused request also gets
// Retry-After: the seconds until it would be allowed, rounded up and at
// least 1, which is never earlier than t, as the draft asks.
//
// Middleware panics, with a message starting "ratelimit: ", if l or
// opts.KeyFunc is nil, if opts.Limit is invalid while opts.LimitFunc is
// nil, or if opts.Policy is not printable ASCII. The middleware is safe for
// concurrent use.
func Middleware(l Limiter, opts MiddlewareOptions) func(http.Handler) http.Handler {
	if l == nil {
		panic("ratelimit: Middleware needs a Limiter")
	}
	if opts.KeyFunc == nil {
		panic("ratelimit: MiddlewareOptions.KeyFunc is required: say what requests are limited by (an API key id, IPKey, ...)")
	}
	if opts.LimitFunc == nil || opts.Limit != (Limit{}) {
		if err := opts.Limit.Validate(); err != nil {
			panic("ratelimit: MiddlewareOptions.Limit: " + err.Error())
		}
	}
	for i := 0; i < len(opts.Policy); i++ {
		if c := opts.Policy[i]; c < 0x20 || c > 0x7e {
			panic(fmt.Sprintf("ratelimit: MiddlewareOptions.Policy %q is not printable ASCII", opts.Policy))
		}
	}
	mw := &middleware{
		limiter:   l,
		keyFunc:   opts.KeyFunc,
		limit:     opts.Limit,
		limitFunc: opts.LimitFunc,
		name:      opts.Policy,
		cost:      opts.Cost,
		onLimited: opts.OnLimited,
		onError:   opts.OnError,
		now:       opts.Now,
		log:       opts.Logger,
	}
	if mw.onLimited == nil {
		mw.onLimited = WriteLimited
	}
	if mw.onError == nil {
		mw.onError = WriteError
	}
	if mw.now == nil {
		mw.now = time.Now
	}
	if opts.Limit != (Limit{}) {
		mw.policy = newPolicy(mw.name, opts.Limit)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mw.serve(w, r, next)
		})
	}
}

type middleware struct {
	limiter   Limiter
	keyFunc   KeyFunc
	limit     Limit
	limitFunc LimitFunc
	name      string
	policy    *policy // for limit; nil if limit is zero
	cost      func(*http.Request) int
	onLimited func(http.ResponseWriter, *http.Request, Decision)
	onError   func(http.ResponseWriter, *http.Request, error)
	now       func() time.Time
	log       *slog.Logger

	// policies caches the policy of each limit LimitFunc returned, so that
	// per-plan limits cost no formatting per request. It is copied on
	// write: reads take no lock.
	policies atomic.Pointer[map[Limit]*policy]
	mu       sync.Mutex // serialises writers of policies
}

// maxCachedPolicies bounds the policy cache, in case a LimitFunc computes
// a different limit for every key.
const maxCachedPolicies = 64

func (mw *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	key, err := mw.keyFunc(r)
	if err != nil {
		mw.fail(w, r, "", err)
		return
	}
	limit, pol := mw.limit, mw.policy
	if mw.limitFunc != nil {
		l, err := mw.limitFunc(r, key)
		if err != nil {
			mw.fail(w, r, key, err)
			return
		}
		if l != (Limit{}) && l != limit {
			if err := l.Validate(); err != nil {
				mw.fail(w, r, key, err)
				return
			}
			limit, pol = l, mw.policyFor(l)
		}
		if pol == nil {
			mw.fail(w, r, key, fmt.Errorf("%w: LimitFunc returned no limit and MiddlewareOptions.Limit is not set", ErrInvalidLimit))
			return
		}
	}
	n := 1
	if mw.cost != nil {
		n = mw.cost(r)
	}
	d, err := mw.limiter.AllowN(r.Context(), pol.prefix+key, limit, n)
	if err != nil {
		mw.fail(w, r, key, err)
		return
	}
	pol.setHeaders(w.Header(), d, mw.now())
	if !d.Allowed {
		if mw.log != nil {
			mw.log.LogAttrs(r.Context(), slog.LevelInfo, "ratelimit: request refused",
				slog.String("policy", pol.name), slog.String("key", logthrottle.Key(key)),
				slog.Int64("retry_after", d.RetryAfterSeconds()))
		}
		mw.onLimited(w, r, d)
		return
	}
	next.ServeHTTP(w, r)
}

// fail logs err, if there is a Logger, and answers with OnError.
func (mw *middleware) fail(w http.ResponseWriter, r *http.Request, key string, err error) {
	if mw.log != nil {
		mw.log.LogAttrs(r.Context(), slog.LevelWarn, "ratelimit: no decision",
			slog.String("key", logthrottle.Key(key)), slog.String("error", err.Error()))
	}
	mw.onError(w, r, err)
}

func (mw *middleware) policyFor(l Limit) *policy {
	if m := mw.policies.Load(); m != nil {
		if p := (*m)[l]; p != nil {
			return p
		}
	}
	p := newPolicy(mw.name, l)
	mw.mu.Lock()
	defer mw.mu.Unlock()
	old := mw.policies.Load()
	if old != nil && len(*old) >= maxCachedPolicies {
		return p
	}
	m := make(map[Limit]*policy, 1+maxCachedPolicies/4)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[l] = p
	mw.policies.Store(&m)
	return p
}
