package apikey_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/store/sqlite"
)

// exampleKeys opens an in-memory store with one user and returns a
// Verifier and a linked Manager issuing "fav_live" keys.
func exampleKeys(vo apikey.VerifierOptions) (v *apikey.Verifier, m *apikey.Manager, userID int64, done func()) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	userID, _, err = st.CreateUser(ctx, "ada@example.com", time.Now())
	if err != nil {
		log.Fatal(err)
	}
	v = apikey.NewVerifier(st, vo)
	m = apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live", Verifier: v})
	return v, m, userID, func() { v.Close(); st.Close() }
}

// Check route scopes on the key the Middleware verified: authentication,
// then the scope, then the rate limiter, so that a request refused for its
// scope spends no rate-limit budget.
func ExampleRequireScopes() {
	verifier, keys, userID, done := exampleKeys(apikey.VerifierOptions{})
	defer done()
	_, reader, _ := keys.Issue(context.Background(), userID, apikey.IssueOptions{Scopes: []string{"favorites:read"}})

	authn := apikey.Middleware(verifier, apikey.MiddlewareOptions{Realm: "favorites"})
	limit := func(next http.Handler) http.Handler { return next } // e.g. ratelimit.Middleware
	create := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	list := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "[]") })

	mux := http.NewServeMux()
	mux.Handle("POST /v1/favorites", authn(apikey.RequireScopes("favorites:write")(limit(create))))
	mux.Handle("GET /v1/favorites", authn(apikey.RequireScopes("favorites:read")(limit(list))))

	for _, method := range []string{"GET", "POST"} {
		r := httptest.NewRequest(method, "/v1/favorites", nil)
		r.Header.Set("Authorization", "Bearer "+reader.Reveal())
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Println(strings.TrimSpace(fmt.Sprint(method, " ", w.Code, " ", w.Header().Get("WWW-Authenticate"))))
	}
	// Output:
	// GET 200
	// POST 403 Bearer realm="favorites", error="insufficient_scope", scope="favorites:write"
}

// Accept the FavoritesAPI seed's legacy "Bearer base64(<id>:<secret>)"
// form for clients that cannot send the canonical token. The key's prefix
// must still be one the Verifier accepts.
func ExampleMiddlewareOptions_acceptLegacyBase64() {
	verifier, keys, userID, done := exampleKeys(apikey.VerifierOptions{Prefixes: []string{"fav_live"}})
	defer done()
	key, token, _ := keys.Issue(context.Background(), userID, apikey.IssueOptions{})
	secret := token.Reveal()[len(token.Reveal())-apikey.SecretLen-apikey.CheckLen:][:apikey.SecretLen]
	legacy := base64.StdEncoding.EncodeToString([]byte(key.ID + ":" + secret))

	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, accept := range []bool{false, true} {
		h := apikey.Middleware(verifier, apikey.MiddlewareOptions{AcceptLegacyBase64: accept})(hello)
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+legacy)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(accept, w.Code)
	}
	// Output:
	// false 401
	// true 200
}

// Limit per client the verifications that reach the store: forged keys
// spend the budget, keys served from the cache never do.
func ExampleMiddlewareOptions_lookupLimiter() {
	verifier, _, _, done := exampleKeys(apikey.VerifierOptions{})
	defer done()

	// In an application, back this with package ratelimit (shared between
	// instances) and add a namespace to the key.
	var mu sync.Mutex
	spent := map[string]int{}
	perClient := apikey.LimiterFunc(func(ctx context.Context, client string) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		spent[client]++
		return spent[client] <= 2, nil
	})
	h := apikey.Middleware(verifier, apikey.MiddlewareOptions{
		LookupLimiter:    perClient,
		LookupRetryAfter: 30 * time.Second,
		// Behind a proxy: return the client address it forwards, trusting
		// the header only from the proxy's own addresses.
		ClientKey: func(r *http.Request) string { return r.RemoteAddr },
	})(http.NotFoundHandler())

	for range 3 {
		forged, _ := apikey.Generate("fav_live") // well formed, unknown
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "192.0.2.1"
		r.Header.Set("Authorization", "Bearer "+forged.Reveal())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(strings.TrimSpace(fmt.Sprint(w.Code, " ", w.Header().Get("Retry-After"))))
	}
	fmt.Println(verifier.Stats().Lookups)
	// Output:
	// 401
	// 401
	// 429 30
	// 2
}

// Verify a key presented as its id and secret, without its prefix.
func ExampleVerifier_VerifySecret() {
	verifier, keys, userID, done := exampleKeys(apikey.VerifierOptions{})
	defer done()
	key, token, _ := keys.Issue(context.Background(), userID, apikey.IssueOptions{Name: "laptop"})
	secret := token.Reveal()[len(token.Reveal())-apikey.SecretLen-apikey.CheckLen:][:apikey.SecretLen]

	p, err := verifier.VerifySecret(context.Background(), key.ID, secret)
	fmt.Println(p.Name, p.Prefix, err)
	// Output: laptop fav_live <nil>
}

// Parse first to learn the key id (to log it, or to decide what to do
// before a store lookup), then verify.
func ExampleVerifier_VerifyToken() {
	verifier, keys, userID, done := exampleKeys(apikey.VerifierOptions{})
	defer done()
	_, issued, _ := keys.Issue(context.Background(), userID, apikey.IssueOptions{})

	t, err := apikey.Parse(issued.Reveal())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("cached before:", verifier.Cached(t.ID))
	_, err = verifier.VerifyToken(context.Background(), t)
	fmt.Println(err, "cached after:", verifier.Cached(t.ID))
	// Output:
	// cached before: false
	// <nil> cached after: true
}

// Act on keys for the signed-in user of a dashboard: another user's key is
// "not found", exactly like a key that does not exist.
func ExampleManager_RevokeOwned() {
	ctx := context.Background()
	_, keys, ada, done := exampleKeys(apikey.VerifierOptions{})
	defer done()
	key, _, _ := keys.Issue(ctx, ada, apikey.IssueOptions{Name: "laptop"})
	const mallory = 42

	fmt.Println(errors.Is(keys.RevokeOwned(ctx, mallory, key.ID), apikey.ErrNotFound))
	fmt.Println(errors.Is(keys.RenameOwned(ctx, mallory, key.ID, "pwned"), apikey.ErrNotFound))
	_, _, err := keys.RollOwned(ctx, mallory, key.ID, time.Hour)
	fmt.Println(errors.Is(err, apikey.ErrNotFound))

	fmt.Println(keys.RenameOwned(ctx, ada, key.ID, "old laptop"))
	fmt.Println(keys.RevokeOwned(ctx, ada, key.ID))
	k, _ := keys.GetOwned(ctx, ada, key.ID)
	fmt.Println(k.Name, k.State(time.Now()))
	// Output:
	// true
	// true
	// true
	// <nil>
	// <nil>
	// old laptop revoked
}

// Rename a key; names with control or bidi characters are refused.
func ExampleManager_Rename() {
	ctx := context.Background()
	_, keys, userID, done := exampleKeys(apikey.VerifierOptions{})
	defer done()
	key, _, _ := keys.Issue(ctx, userID, apikey.IssueOptions{Name: "laptop"})

	fmt.Println(keys.Rename(ctx, key.ID, "CI runner"))
	fmt.Println(errors.Is(keys.Rename(ctx, key.ID, "invoice\u202Efdp.exe"), apikey.ErrInvalidOptions))
	// Output:
	// <nil>
	// true
}

// A refusal from the lookup limiter is a 429.
func ExampleErrThrottled() {
	fmt.Println(apikey.StatusCode(apikey.ErrThrottled))
	// Output: 429
}
