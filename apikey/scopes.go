package apikey

import (
	"net/http"
	"strings"
)

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
