package apikey_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/store/sqlite"
)

// Issue a key, show it once, and verify it.
func ExampleManager_Issue() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	userID, _, err := st.CreateUser(ctx, "ada@example.com", time.Now())
	if err != nil {
		log.Fatal(err)
	}

	verifier := apikey.NewVerifier(st, apikey.VerifierOptions{})
	defer verifier.Close()
	keys := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live", Verifier: verifier})

	key, token, err := keys.Issue(ctx, userID, apikey.IssueOptions{Name: "laptop"})
	if err != nil {
		log.Fatal(err)
	}
	// token.Reveal() is the full key: show it to its owner once. Printing
	// or logging the Token itself shows only the prefix and id.
	fmt.Println(strings.HasPrefix(token.Reveal(), "fav_live_"+key.ID+"_"), len(token.Reveal()))
	fmt.Println(token.String() == "fav_live_"+key.ID+"_…")

	p, err := verifier.Verify(ctx, token.Reveal())
	fmt.Println(p.Name, p.UserID == userID, err)

	_ = keys.Revoke(ctx, key.ID)
	_, err = verifier.Verify(ctx, token.Reveal())
	fmt.Println(err)
	// Output:
	// true 60
	// true
	// laptop true <nil>
	// apikey: API key revoked
}

// Protect a handler with API keys.
func ExampleMiddleware() {
	ctx := context.Background()
	st, _ := sqlite.Open(ctx, ":memory:")
	defer st.Close()
	_, _ = st.Migrate(ctx)
	userID, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())

	verifier := apikey.NewVerifier(st, apikey.VerifierOptions{})
	defer verifier.Close()
	keys := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live", Verifier: verifier})
	_, token, _ := keys.Issue(ctx, userID, apikey.IssueOptions{Name: "laptop"})

	requireKey := apikey.Middleware(verifier, apikey.MiddlewareOptions{Realm: "favorites"})
	mux := http.NewServeMux()
	mux.Handle("GET /v1/me", requireKey(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := apikey.PrincipalFrom(r.Context())
		fmt.Fprintf(w, "hello, key %q", p.Name)
	})))

	for _, auth := range []string{"Bearer " + token.Reveal(), "", "Bearer fav_live_nope"} {
		r := httptest.NewRequest("GET", "/v1/me", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Println(strings.TrimSpace(fmt.Sprint(w.Code, " ", w.Header().Get("WWW-Authenticate"))))
		if w.Code == 200 {
			fmt.Println(w.Body)
		}
	}
	// Output:
	// 200
	// hello, key "laptop"
	// 401 Bearer realm="favorites"
	// 401 Bearer realm="favorites", error="invalid_token"
}

// Refuse valid keys whose owner may not use the API now.
func ExampleMiddlewareOptions_authorize() {
	subscribed := map[int64]bool{} // in an application: billing.Entitled
	_ = apikey.MiddlewareOptions{
		Authorize: func(ctx context.Context, p apikey.Principal) error {
			if !subscribed[p.UserID] {
				return apikey.Forbid("the subscription is not active") // 403
			}
			return nil
		},
	}
	fmt.Println(apikey.StatusCode(apikey.Forbid("x")))
	// Output: 403
}
