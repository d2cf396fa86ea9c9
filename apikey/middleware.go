package apikey

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/apikit/apikit/internal/problem"
)

// MaxCredentialLen bounds the length of a credential the [Middleware] will
// look at; longer ones are malformed without further work.
const MaxCredentialLen = 256

// MiddlewareOptions configures [Middleware]. The zero value authenticates
// every request with any valid key.
type MiddlewareOptions struct {
	// Realm is the realm of the WWW-Authenticate challenge (default "api").
	Realm string

	// Scopes lists scopes the key must all carry; a key lacking one is
	// refused with 403 and error="insufficient_scope". Build one middleware
	// per set of routes that needs different scopes.
	Scopes []string

	// Authorize, if set, decides whether a valid key may be used now, for
	// example whether its owner's subscription is active. Return nil to
	// serve the request, a [ForbiddenError] (see [Forbid]) to refuse it
	// with 403, or any other error if the decision could not be made (the
	// request is then refused with 503: fail closed).
	Authorize func(ctx context.Context, p Principal) error

	// ErrorHandler, if set, writes the response for a refused request; err
	// wraps one of this package's errors and [StatusCode] gives its status.
	// The WWW-Authenticate header is already set when it is called. The
	// default writes an RFC 9457 problem.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

	// Logger receives refusals at debug level and authorization failures
	// at warn level (default: discard). Tokens are never logged, only key
	// ids.
	Logger *slog.Logger
}

// Middleware authenticates requests by API key and puts the [Principal] in
// the request context ([PrincipalFrom]). Keys are read from
//
//	Authorization: Bearer <token>
//	X-API-Key: <token>
//	Authorization: Bearer base64(<id>:<secret>)   (FavoritesAPI's legacy form)
//
// Refusals follow RFC 6750: 401 with a WWW-Authenticate challenge for a
// missing or bad key, 400 for a key in the URL query or for several
// credentials at once, 403 for a valid key lacking a scope or refused by
// Authorize, and 503 when the key store cannot be reached. The wrapped
// handler runs only for an accepted key.
func Middleware(v *Verifier, opts MiddlewareOptions) func(http.Handler) http.Handler {
	if v == nil {
		panic("apikey: Middleware with a nil Verifier")
	}
	for _, s := range opts.Scopes {
		if !validScope(s) {
			panic("apikey: Middleware with invalid scope " + `"` + s + `"`)
		}
	}
	if opts.Realm == "" {
		opts.Realm = "api"
	}
	if strings.ContainsAny(opts.Realm, "\"\\\r\n") {
		panic("apikey: Middleware realm may not contain quotes, backslashes or newlines")
	}
	if opts.ErrorHandler == nil {
		opts.ErrorHandler = WriteError
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	scope := strings.Join(opts.Scopes, " ")
	challenge := `Bearer realm="` + opts.Realm + `"`

	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			p, err := authenticate(ctx, v, r)
			if err == nil {
				for _, s := range opts.Scopes {
					if !p.HasScope(s) {
						err = ErrInsufficientScope
						break
					}
				}
			}
			if err == nil && opts.Authorize != nil {
				if err = opts.Authorize(ctx, p); err != nil && !errors.Is(err, ErrForbidden) {
					logger.LogAttrs(ctx, slog.LevelWarn, "apikey: authorization failed",
						slog.String("key_id", p.KeyID), slog.Any("error", err))
					err = errors.Join(ErrUnavailable, err)
				}
			}
			if err != nil {
				logger.LogAttrs(ctx, slog.LevelDebug, "apikey: request refused",
					slog.String("key_id", p.KeyID), slog.String("reason", err.Error()))
				if h := challengeFor(challenge, scope, err); h != "" {
					w.Header().Set("WWW-Authenticate", h)
				}
				opts.ErrorHandler(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(NewContext(ctx, p)))
		})
	}
}

// authenticate extracts the credential from r and verifies it.
func authenticate(ctx context.Context, v *Verifier, r *http.Request) (Principal, error) {
	cred, bearer, err := credential(r)
	if err != nil {
		if errors.Is(err, ErrMalformed) {
			v.stats.malformed.Add(1)
		}
		return Principal{}, err
	}
	t, perr := Parse(cred)
	if perr == nil {
		return v.verify(ctx, t, false, "", false)
	}
	if !bearer { // the legacy form is only ever sent as a bearer token
		v.stats.malformed.Add(1)
		return Principal{}, perr
	}
	t, check, err := parseLegacyBearer(cred)
	if err != nil {
		v.stats.malformed.Add(1)
		if strings.IndexByte(cred, '_') >= 0 {
			return Principal{}, perr // most likely a mistyped token
		}
		return Principal{}, err
	}
	return v.verify(ctx, t, true, check, false)
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
// has a value that is a well-formed token.
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
	}
	return false
}

// parseLegacyBearer decodes the seed's base64("<id>:<secret>") credential,
// in standard or URL-safe base64, padded or not.
func parseLegacyBearer(cred string) (Token, string, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(cred); err == nil {
			return parseLegacy(string(b))
		}
	}
	return Token{}, "", malformed("not an API key")
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
	case errors.Is(err, ErrForbidden):
		p.Code, p.Detail = "forbidden", "This API key may not be used now."
		var fe *ForbiddenError
		if errors.As(err, &fe) && fe.Reason != "" {
			p.Detail = "This API key may not be used now: " + fe.Reason + "."
		}
	default:
		p.Code, p.Detail = "unavailable", "The API key could not be verified right now; try again shortly."
		w.Header().Set("Retry-After", "1")
	}
	problem.Write(w, p)
}

type principalKey struct{}

// NewContext returns a copy of ctx carrying p; [Middleware] uses it, and
// tests of handlers can too.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, &p)
}

// PrincipalFrom returns the principal that [Middleware] put in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	if !ok {
		return Principal{}, false
	}
	return *p, true
}
