package apikey_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/apikit/apikit/apikey"
)

// countingLimit stands for a rate limiter: it counts the requests that
// reach it.
func countingLimit(n *atomic.Int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			next.ServeHTTP(w, r)
		})
	}
}

func ok(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }

// RequireScopes refuses a key without the scope with 403 through the
// Middleware's own ErrorHandler and realm, without verifying the key again
// (one verification per request in Stats, no lookup) and before the rate
// limiter mounted after it, on ServeMux and on chi alike.
func TestRequireScopes(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{})
	_, reader := f.issue(t, apikey.IssueOptions{Scopes: []string{"favorites:read"}})
	_, writer := f.issue(t, apikey.IssueOptions{Scopes: []string{"favorites:read", "favorites:write"}})
	var handled []error
	authn := apikey.Middleware(f.v, apikey.MiddlewareOptions{Realm: "favorites", ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
		handled = append(handled, err)
		apikey.WriteError(w, r, err)
	}})
	var limited atomic.Int64
	limit := countingLimit(&limited)

	mux := http.NewServeMux()
	mux.Handle("POST /v1/favorites", authn(apikey.RequireScopes("favorites:write")(limit(http.HandlerFunc(ok)))))
	mux.Handle("GET /v1/favorites", authn(apikey.RequireScopes("favorites:read")(limit(http.HandlerFunc(ok)))))

	r := chi.NewRouter()
	r.Route("/v1", func(r chi.Router) {
		r.Use(authn)
		r.With(apikey.RequireScopes("favorites:write"), limit).Post("/favorites", ok)
		r.With(apikey.RequireScopes("favorites:read"), limit).Get("/favorites", ok)
	})

	for name, h := range map[string]http.Handler{"ServeMux": mux, "chi": r} {
		t.Run(name, func(t *testing.T) {
			handled = nil
			before := f.v.Stats()
			limited.Store(0)
			do := func(method, token string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(method, "/v1/favorites", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec
			}
			rec := do("POST", reader)
			checkProblem(t, rec, 403, "insufficient_scope")
			if got, want := rec.Header().Get("WWW-Authenticate"), `Bearer realm="favorites", error="insufficient_scope", scope="favorites:write"`; got != want {
				t.Errorf("WWW-Authenticate = %q, want %q", got, want)
			}
			if len(handled) != 1 || apikey.StatusCode(handled[0]) != 403 {
				t.Errorf("ErrorHandler got %v, want one insufficient-scope error", handled)
			}
			if n := limited.Load(); n != 0 {
				t.Errorf("a request refused for its scope reached the rate limiter %d times", n)
			}
			for _, c := range []struct{ method, token string }{{"POST", writer}, {"GET", reader}, {"GET", writer}} {
				if rec := do(c.method, c.token); rec.Code != 204 {
					t.Errorf("%s with the scope: status %d", c.method, rec.Code)
				}
			}
			after := f.v.Stats()
			if after.Verified-before.Verified != 4 || after.Lookups > before.Lookups+2 {
				t.Errorf("4 requests: %d verifications, %d lookups; want 4 and no second verification",
					after.Verified-before.Verified, after.Lookups-before.Lookups)
			}
			if limited.Load() != 3 {
				t.Errorf("rate limiter saw %d requests, want 3", limited.Load())
			}
		})
	}
}

// Without a Principal in the context (a route not behind Middleware)
// RequireScopes fails closed; with one put by NewContext it uses
// WriteError.
func TestRequireScopesWithoutMiddleware(t *testing.T) {
	h := apikey.RequireScopes("a", "b")(http.HandlerFunc(ok))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	checkProblem(t, rec, 401, "missing_token")
	if rec.Header().Get("WWW-Authenticate") != `Bearer realm="api"` {
		t.Errorf("WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
	}

	for scopes, want := range map[string]int{"a": 403, "a b": 204, "b a c": 204} {
		ctx := apikey.NewContext(context.Background(), apikey.Principal{KeyID: "k", Scopes: strings.Fields(scopes)})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil).WithContext(ctx))
		if rec.Code != want {
			t.Errorf("scopes %q: status %d, want %d", scopes, rec.Code, want)
		}
		if want == 403 && rec.Header().Get("WWW-Authenticate") != `Bearer realm="api", error="insufficient_scope", scope="a b"` {
			t.Errorf("WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
		}
	}

	defer func() {
		if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "apikey: RequireScopes") {
			t.Errorf("recovered %v, want a panic for an invalid scope", r)
		}
	}()
	apikey.RequireScopes(`bad"scope`)
}
