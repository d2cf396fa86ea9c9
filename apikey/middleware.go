package apikey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// MiddlewareOptions configures [Middleware]. The zero value authenticates
// every request with any valid key in its canonical form.
type MiddlewareOptions struct {
	// Realm is the realm of the WWW-Authenticate challenge (default "api").
	Realm string

	// Scopes lists scopes the key must all carry; a key lacking one is
	// refused with 403 and error="insufficient_scope". For scopes that
	// differ between routes behind one Middleware, use [RequireScopes].
	Scopes []string

	// Authorize, if set, decides whether a valid key may be used now, for
	// example whether its owner's subscription is active. Return nil to
	// serve the request, a [ForbiddenError] (see [Forbid]) to refuse it
	// with 403, or any other error if the decision could not be made (the
	// request is then refused with 503: fail closed).
	Authorize func(ctx context.Context, p Principal) error

	// ErrorHandler, if set, writes the response for a refused request; err
	// wraps one of this package's errors and [StatusCode] gives its status.
	// The WWW-Authenticate header (and Retry-After for 429) is already set
	// when it is called. The default writes an RFC 9457 problem. It also
	// writes the refusals of [RequireScopes] behind this Middleware.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

	// Logger receives refusals at debug level, revoked keys at info level,
	// and authorization and limiter failures at warn level (default:
	// discard). Tokens are never logged, only key ids.
	Logger *slog.Logger

	// AcceptLegacyBase64 also accepts the FavoritesAPI seed's legacy form
	// "Authorization: Bearer base64(<id>:<secret>)", where secret is the
	// 32-character secret, optionally followed by its 6 check characters
	// (which must then match). Off by default: turn it on only for clients
	// that cannot send the canonical token. The key's stored prefix must
	// be accepted by [VerifierOptions.Prefixes], as for the canonical
	// form; the legacy form is read only from the Authorization header,
	// never from X-API-Key, and in the URL query it is refused with 400
	// whether or not this is set.
	AcceptLegacyBase64 bool

	// LookupLimiter, if set, limits per client (see ClientKey) the
	// verifications that reach the store, so that a flood of forged keys
	// (checksums are public, so anyone can forge well-formed ones) cannot
	// reach the database unthrottled. Before a key whose id the
	// [Verifier] does not know is looked up (neither cached, nor verified
	// earlier with its cache entry since expired, nor remembered as
	// unknown), the middleware asks LookupLimiter.Allow with the client's key; a refusal
	// answers 429 ([ErrThrottled]) with Retry-After, before any store
	// query. An error from the limiter refuses too (fail closed) and is
	// logged.
	//
	// What spends the budget: every forged or mistyped key (one unit
	// each) and the first use of a valid key on this instance. What does
	// not: malformed credentials (refused without a lookup), ids
	// remembered as unknown, keys served from the cache, which are
	// accepted even from a client whose budget is spent, and the re-reads
	// of keys this instance has verified before once their cache entry
	// expires (so that a store outage, in which every re-read fails, does
	// not turn a customer's 503s into 429s). So many clients behind one
	// proxy that share a client key lose, to one bad client among them,
	// at most the first lookups of keys not yet cached, for as long as
	// the limiter refuses; keys in use keep working. Give each client its
	// own key with a ClientKey that knows your trusted proxies.
	//
	// The limiter is asked with the ClientKey alone; a limiter shared
	// with other uses should add its own namespace.
	LookupLimiter Limiter

	// ClientKey returns the key that identifies a request's client to
	// LookupLimiter (default: the host of r.RemoteAddr). Behind a reverse
	// proxy, pass one that reads the proxy's forwarding header, and only
	// from trusted proxies.
	ClientKey func(r *http.Request) string

	// ClientIP returns the address of a request's client, checked against
	// the networks a key is restricted to ([Key.AllowedCIDRs]); it is
	// called only for such keys. The default is the address of the TCP
	// peer (r.RemoteAddr). Behind a reverse proxy, pass one that trusts
	// the proxy's forwarding header only from the proxy, such as
	//
	//	trusted, _ := ratelimit.ParseTrustedProxies(os.Getenv("TRUSTED_PROXIES"))
	//	key := ratelimit.ClientKey(ratelimit.IPKeyOptions{TrustedProxies: trusted, IPv6Bits: 128})
	//	ClientIP: func(r *http.Request) netip.Addr { a, _ := netip.ParseAddr(key(r)); return a }
	//
	// (IPv6Bits: 128, so that the key is the address rather than its
	// /64). An invalid address refuses every key restricted to networks.
	ClientIP func(r *http.Request) netip.Addr

	// LookupRetryAfter is the Retry-After sent with a 429 from
	// LookupLimiter (default 1 minute; rounded up to whole seconds):
	// about the time the limiter needs to grant another lookup.
	LookupRetryAfter time.Duration
}

// Limiter decides whether the client identified by key may act now; each
// call that returns true spends one unit of its budget. It must be safe for
// concurrent use. An error is treated as a refusal (fail closed). See
// [MiddlewareOptions.LookupLimiter].
type Limiter interface {
	Allow(ctx context.Context, key string) (bool, error)
}

// LimiterFunc adapts a function to a [Limiter].
type LimiterFunc func(ctx context.Context, key string) (bool, error)

// Allow calls f.
func (f LimiterFunc) Allow(ctx context.Context, key string) (bool, error) { return f(ctx, key) }

// Middleware authenticates requests by API key and puts the [Principal] in
// the request context ([PrincipalFrom]). Keys are read from
//
//	Authorization: Bearer <token>
//	X-API-Key: <token>
//	Authorization: Bearer base64(<id>:<secret>)   (only with AcceptLegacyBase64)
//
// Refusals follow RFC 6750: 401 with a WWW-Authenticate challenge for a
// missing or bad key, 400 for a key in the URL query or for several
// credentials at once, 403 for a valid key lacking a scope or refused by
// Authorize or used from outside the key's AllowedCIDRs (see ClientIP),
// 429 for a client over its LookupLimiter budget, and 503 when
// the key store cannot be reached. The wrapped handler runs only for an
// accepted key.
func Middleware(v *Verifier, opts MiddlewareOptions) func(http.Handler) http.Handler {
	if v == nil {
		panic("apikey: Middleware with a nil Verifier")
	}
	checkScopes("Middleware", opts.Scopes)
	m := newRefuser(opts.Realm, opts.ErrorHandler, opts.Logger)
	if opts.ClientKey == nil {
		opts.ClientKey = remoteHost
	}
	if opts.ClientIP == nil {
		opts.ClientIP = RemoteAddr
	}
	if opts.LookupRetryAfter <= 0 {
		opts.LookupRetryAfter = time.Minute
	}
	retryAfter := strconv.FormatInt(int64((opts.LookupRetryAfter+time.Second-1)/time.Second), 10)
	scope := strings.Join(opts.Scopes, " ")

	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			c, err := extract(v, r, opts.AcceptLegacyBase64)
			if err == nil && opts.LookupLimiter != nil && !v.cache.known(c.id, v.opts.Now().UnixNano()) {
				err = allowLookup(ctx, opts.LookupLimiter, opts.ClientKey(r), m.logger)
				if err != nil {
					w.Header().Set("Retry-After", retryAfter)
				}
			}
			var p Principal
			if err == nil {
				p, err = c.verify(ctx, v, origin{r: r, ip: opts.ClientIP})
			}
			if err == nil {
				err = missingScope(p, opts.Scopes)
			}
			if err == nil && opts.Authorize != nil {
				if err = opts.Authorize(ctx, p); err != nil && !errors.Is(err, ErrForbidden) {
					m.logger.LogAttrs(ctx, slog.LevelWarn, "apikey: authorization failed",
						slog.String("key_id", p.KeyID), slog.Any("error", err))
					err = errors.Join(ErrUnavailable, err)
				}
			}
			if err != nil {
				m.refuse(w, r, c.id, scope, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, principalKey{}, &authInfo{p: p, m: m})))
		})
	}
}

// refuser answers refused requests for a Middleware and for RequireScopes
// behind it.
type refuser struct {
	challenge    string
	errorHandler func(w http.ResponseWriter, r *http.Request, err error)
	logger       *slog.Logger
}

func newRefuser(realm string, eh func(http.ResponseWriter, *http.Request, error), logger *slog.Logger) *refuser {
	if realm == "" {
		realm = "api"
	}
	if strings.ContainsAny(realm, "\"\\\r\n") {
		panic("apikey: Middleware realm may not contain quotes, backslashes or newlines")
	}
	if eh == nil {
		eh = WriteError
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &refuser{challenge: `Bearer realm="` + realm + `"`, errorHandler: eh, logger: logger}
}

// refuse logs the refusal (a revoked key at info level, with its id) and
// writes the response. keyID is the presented key's id, if it was read.
func (m *refuser) refuse(w http.ResponseWriter, r *http.Request, keyID, scope string, err error) {
	level, msg := slog.LevelDebug, "apikey: request refused"
	if errors.Is(err, ErrRevoked) {
		level, msg = slog.LevelInfo, "apikey: revoked key refused"
	}
	m.logger.LogAttrs(r.Context(), level, msg, slog.String("key_id", keyID), slog.String("reason", err.Error()))
	if h := challengeFor(m.challenge, scope, err); h != "" {
		w.Header().Set("WWW-Authenticate", h)
	}
	m.errorHandler(w, r, err)
}

// allowLookup asks the limiter whether the client may cause a store lookup.
func allowLookup(ctx context.Context, l Limiter, client string, logger *slog.Logger) error {
	ok, err := l.Allow(ctx, client)
	if err != nil {
		logger.LogAttrs(ctx, slog.LevelWarn, "apikey: lookup limiter failed; refusing", slog.Any("error", err))
		return fmt.Errorf("%w: limiter failed", ErrThrottled)
	}
	if !ok {
		return ErrThrottled
	}
	return nil
}

// remoteHost is the default ClientKey: the IP address of the peer.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// RemoteAddr returns the address of the request's TCP peer, from
// r.RemoteAddr, IPv4-mapped addresses unmapped; the zero Addr if it holds
// none (a Unix socket). It is the default [MiddlewareOptions.ClientIP].
func RemoteAddr(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(r.RemoteAddr)
	return a.Unmap()
}
