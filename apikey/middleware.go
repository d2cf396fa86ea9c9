package apikey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/problem"
)

// MaxCredentialLen bounds the length of a credential the [Middleware] will
// look at; longer ones are malformed without further work.
const MaxCredentialLen = 256

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
// Authorize, 429 for a client over its LookupLimiter budget, and 503 when
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
				p, err = c.verify(ctx, v)
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

// RequireScopes returns middleware that serves a request only if the
// [Principal] that [Middleware] put in its context carries every one of
// scopes; otherwise it answers 403 with error="insufficient_scope" and the
// required scopes in the WWW-Authenticate challenge (RFC 6750 section 3.1),
// through the ErrorHandler of that Middleware. It does not verify the key
// again and does not count in [Verifier.Stats]. Without a Principal in the
// context (a route not behind Middleware) it refuses with 401: it fails
// closed.
//
// Mount it after Middleware and before a rate limiter, so that a request
// refused for its scope spends no rate-limit budget:
//
//	authn(apikey.RequireScopes("favorites:write")(limit(handler)))
//
// With chi: r.Use(authn) on the group, then
// r.With(apikey.RequireScopes("favorites:write"), limit).Post(…). A
// limiter mounted before RequireScopes counts refused requests too.
//
// It panics if a scope is not a valid scope token (RFC 6749 section 3.3).
func RequireScopes(scopes ...string) func(http.Handler) http.Handler {
	checkScopes("RequireScopes", scopes)
	scope := strings.Join(scopes, " ")
	fallback := newRefuser("", nil, nil)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			info, _ := r.Context().Value(principalKey{}).(*authInfo)
			if info == nil {
				fallback.refuse(w, r, "", scope, ErrMissing)
				return
			}
			m := info.m
			if m == nil { // put there by NewContext
				m = fallback
			}
			if err := missingScope(info.p, scopes); err != nil {
				m.refuse(w, r, info.p.KeyID, scope, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func checkScopes(who string, scopes []string) {
	for _, s := range scopes {
		if !validScope(s) {
			panic("apikey: " + who + " with invalid scope " + `"` + s + `"`)
		}
	}
}

// missingScope returns ErrInsufficientScope if p lacks one of scopes.
func missingScope(p Principal, scopes []string) error {
	for _, s := range scopes {
		if !p.HasScope(s) {
			return ErrInsufficientScope
		}
	}
	return nil
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

// presented is a credential read from a request: a canonical token, or a
// legacy id and secret (token.Prefix empty) with optional check characters.
type presented struct {
	id     string
	token  Token
	legacy bool
	check  string
}

// verify checks the credential through the Verifier's public API.
func (c presented) verify(ctx context.Context, v *Verifier) (Principal, error) {
	if !c.legacy {
		return v.VerifyToken(ctx, c.token)
	}
	p, err := v.VerifySecret(ctx, c.id, c.token.secret)
	if err == nil && c.check != "" && !checksumMatches(p.Prefix+"_"+c.id+"_"+c.token.secret, c.check) {
		return Principal{}, malformed("checksum mismatch")
	}
	return p, err
}

// extract reads the one credential of r and parses it, without any store
// lookup.
func extract(v *Verifier, r *http.Request, legacy bool) (presented, error) {
	cred, bearer, err := credential(r)
	if err != nil {
		if errors.Is(err, ErrMalformed) {
			v.stats.malformed.Add(1)
		}
		return presented{}, err
	}
	t, perr := Parse(cred)
	if perr == nil {
		return presented{id: t.ID, token: t}, nil
	}
	if !legacy || !bearer { // the legacy form is only ever sent as a bearer token
		v.stats.malformed.Add(1)
		return presented{}, perr
	}
	id, secret, check, err := parseLegacyBearer(cred)
	if err != nil {
		v.stats.malformed.Add(1)
		if strings.IndexByte(cred, '_') >= 0 {
			return presented{}, perr // most likely a mistyped token
		}
		return presented{}, err
	}
	return presented{id: id, token: Token{ID: id, secret: secret}, legacy: true, check: check}, nil
}

// queryKeyNames are query parameters that conventionally carry credentials;
// their presence alone refuses the request.
var queryKeyNames = [...]string{"access_token", "api_key", "apikey", "api-key", "x-api-key"}

// credential returns the single credential carried by r, and whether it came
// from the Authorization header.
func credential(r *http.Request) (cred string, bearer bool, err error) {
	if r.URL != nil && r.URL.RawQuery != "" && keyInQuery(r.URL.RawQuery) {
		return "", false, ErrInQuery
	}
	var auth string
	switch values := r.Header.Values("Authorization"); len(values) {
	case 0:
	case 1:
		scheme, rest, _ := strings.Cut(values[0], " ")
		if strings.EqualFold(scheme, "Bearer") {
			auth, bearer = strings.TrimSpace(rest), true
		}
	default:
		return "", false, ErrAmbiguous
	}
	keys := r.Header.Values("X-API-Key")
	switch {
	case len(keys) > 1 || len(keys) == 1 && bearer:
		return "", false, ErrAmbiguous
	case len(keys) == 1:
		cred, err = nonEmpty(strings.TrimSpace(keys[0]))
		return cred, false, err
	case bearer:
		cred, err = nonEmpty(auth)
		return cred, true, err
	}
	return "", false, ErrMissing
}

func nonEmpty(cred string) (string, error) {
	if cred == "" || len(cred) > MaxCredentialLen {
		return "", malformed("empty or oversized credential")
	}
	return cred, nil
}

// keyInQuery reports whether the raw query names a credential parameter or
// has a value that is a well-formed token, canonical or legacy.
func keyInQuery(raw string) bool {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		name, value, _ := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			for _, k := range queryKeyNames {
				if strings.EqualFold(n, k) {
					return true
				}
			}
		}
		if len(value) > tailLen {
			if val, err := url.QueryUnescape(value); err == nil {
				if _, err := Parse(val); err == nil {
					return true
				}
			}
		}
		if legacyInQuery(value) {
			return true
		}
	}
	return false
}

// challengeFor returns the WWW-Authenticate challenge for err, or "".
func challengeFor(base, scope string, err error) string {
	switch {
	case errors.Is(err, ErrMissing):
		return base
	case errors.Is(err, ErrInQuery), errors.Is(err, ErrAmbiguous):
		return base + `, error="invalid_request"`
	case errors.Is(err, ErrInsufficientScope):
		return base + `, error="insufficient_scope", scope="` + scope + `"`
	case StatusCode(err) == http.StatusUnauthorized:
		return base + `, error="invalid_token"`
	}
	return ""
}

// WriteError writes the default RFC 9457 problem response for an error from
// [Middleware] or [Verifier.Verify]. Its detail tells the client what to do
// without revealing more than the client already knows.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	status := StatusCode(err)
	p := problem.New(status, "invalid_token", "")
	switch {
	case errors.Is(err, ErrMissing):
		p.Code, p.Detail = "missing_token", "Send your API key in the Authorization header: \"Authorization: Bearer <key>\"."
	case errors.Is(err, ErrMalformed):
		p.Detail = "The API key is malformed; check that it was copied completely."
	case errors.Is(err, ErrInvalid):
		p.Detail = "The API key is not valid."
	case errors.Is(err, ErrRevoked):
		p.Detail = "The API key has been revoked."
	case errors.Is(err, ErrExpired):
		p.Detail = "The API key has expired."
	case errors.Is(err, ErrInactive):
		p.Detail = "The API key is deactivated."
	case errors.Is(err, ErrInQuery):
		p.Code, p.Detail = "invalid_request", "API keys are not accepted in the URL; send the key in the Authorization header. Consider this key exposed and roll it."
	case errors.Is(err, ErrAmbiguous):
		p.Code, p.Detail = "invalid_request", "Send exactly one credential: either Authorization: Bearer or X-API-Key."
	case errors.Is(err, ErrInsufficientScope):
		p.Code, p.Detail = "insufficient_scope", "The API key lacks a scope this request requires."
	case errors.Is(err, ErrThrottled):
		p.Code, p.Detail = "rate_limited", "Too many API keys from this client had to be looked up; try again later."
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", "60")
		}
	case errors.Is(err, ErrForbidden):
		p.Code, p.Detail = "forbidden", "This API key may not be used now."
		var fe *ForbiddenError
		if errors.As(err, &fe) && fe.Reason != "" {
			p.Detail = "This API key may not be used now: " + strings.TrimRight(fe.Reason, ".") + "."
		}
	default:
		p.Code, p.Detail = "unavailable", "The API key could not be verified right now; try again shortly."
		w.Header().Set("Retry-After", "1")
	}
	problem.Write(w, p)
}

type principalKey struct{}

// authInfo is what Middleware puts in the context: the principal, and how
// to refuse a request for it (used by RequireScopes).
type authInfo struct {
	p Principal
	m *refuser // nil when put by NewContext
}

// NewContext returns a copy of ctx carrying p, as [Middleware] does; tests
// of handlers can use it. [RequireScopes] refuses requests with such a
// context through [WriteError].
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, &authInfo{p: p})
}

// PrincipalFrom returns the principal that [Middleware] put in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	info, ok := ctx.Value(principalKey{}).(*authInfo)
	if !ok {
		return Principal{}, false
	}
	return info.p, true
}
