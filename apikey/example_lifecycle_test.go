package apikey_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
)

// Issue a key with metadata, tags, an environment and a network
// restriction; a handler finds them in the Principal. (The store must keep
// attributes: apikey.AttributeStore.)
func ExampleIssueOptions() {
	ctx := context.Background()
	st := apikeytest.NewMemoryStore()
	user, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())
	v := apikey.NewVerifier(st, apikey.VerifierOptions{})
	defer v.Close()
	m := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live", Verifier: v})

	cidrs, _ := apikey.ParseCIDRs("203.0.113.0/24, 2001:db8::/48")
	_, tok, err := m.Issue(ctx, user, apikey.IssueOptions{
		Name:         "ci",
		Environment:  apikey.EnvTest,
		ExpiresIn:    90 * 24 * time.Hour,
		Metadata:     json.RawMessage(`{"customer": "acme"}`),
		Tags:         []string{"team:billing"},
		AllowedCIDRs: cidrs,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := apikey.Middleware(v, apikey.MiddlewareOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := apikey.PrincipalFrom(r.Context())
		fmt.Println(p.Prefix, p.Environment, string(p.Metadata), p.Tags)
	}))
	for _, from := range []string{"203.0.113.7:4000", "198.51.100.1:4000"} {
		r := httptest.NewRequest("GET", "/v1/me", nil)
		r.RemoteAddr = from
		r.Header.Set("Authorization", "Bearer "+tok.Reveal())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code)
	}
	// Output:
	// fav_test test {"customer":"acme"} [team:billing]
	// 200
	// 403
}

// A program that verifies keys without the Middleware tells the Verifier
// the client's address, or keys restricted to networks are refused.
func ExampleWithClientAddr() {
	ctx := context.Background()
	st := apikeytest.NewMemoryStore()
	user, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())
	v := apikey.NewVerifier(st, apikey.VerifierOptions{})
	defer v.Close()
	m := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live", Verifier: v})
	_, tok, _ := m.Issue(ctx, user, apikey.IssueOptions{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})

	_, err := v.Verify(ctx, tok.Reveal())
	fmt.Println(err)
	_, err = v.Verify(apikey.WithClientAddr(ctx, netip.MustParseAddr("10.1.2.3")), tok.Reveal())
	fmt.Println(err)
	// Output:
	// apikey: client address not allowed for this key
	// <nil>
}

// Every instance runs an ExpiryNotifier; the claims in the shared store
// make each warning go out once.
func ExampleExpiryNotifier() {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	st := apikeytest.NewMemoryStore()
	user, _, _ := st.CreateUser(ctx, "ada@example.com", now)
	m := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live", Now: clock})
	m.Issue(ctx, user, apikey.IssueOptions{Name: "laptop", ExpiresIn: 30 * 24 * time.Hour})

	opts := apikey.ExpiryOptions{Now: clock, Notify: func(ctx context.Context, n apikey.Notice) error {
		fmt.Printf("mail user %d: key %q: %s (expires %s)\n", n.Key.UserID, n.Key.Name, n.Kind, n.Due.Format(time.DateOnly))
		return nil
	}}
	a, b := apikey.NewExpiryNotifier(st, opts), apikey.NewExpiryNotifier(st, opts) // two instances
	now = now.Add(25 * 24 * time.Hour)
	a.RunOnce(ctx)
	b.RunOnce(ctx)
	now = now.Add(4*24*time.Hour + time.Hour)
	b.RunOnce(ctx)
	a.RunOnce(ctx)
	// In an application: go notifier.Run(ctx), which checks every hour.
	// Output:
	// mail user 1: key "laptop": key.expires_in_7_days (expires 2026-05-31)
	// mail user 1: key "laptop": key.expires_in_1_day (expires 2026-05-31)
}

// A LeakResponder revokes a key found in public and tells its owner once,
// however often the report arrives. Package apikey/secretscan feeds it
// GitHub's reports.
func ExampleLeakResponder() {
	ctx := context.Background()
	st := apikeytest.NewMemoryStore()
	user, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())
	m := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live"})
	_, tok, _ := m.Issue(ctx, user, apikey.IssueOptions{Name: "production"})

	l := apikey.NewLeakResponder(m, apikey.LeakOptions{Notices: st, Notify: func(ctx context.Context, n apikey.Notice) error {
		fmt.Printf("mail user %d: key %q was found at %s\n", n.Key.UserID, n.Key.Name, n.URL)
		return nil
	}})
	for range 2 {
		res, err := l.Respond(ctx, apikey.Leak{Token: tok.Reveal(), URL: "https://gist.github.com/x/1", Reporter: apikey.ActorGitHub})
		fmt.Println(res.Ours, res.Live, res.Notified, err)
	}
	// Output:
	// mail user 1: key "production" was found at https://gist.github.com/x/1
	// true true true <nil>
	// true false false <nil>
}

// The Manager reports changes to an audit hook, such as package audit's
// Log (see its example).
func ExampleManagerOptions_audit() {
	ctx := context.Background()
	st := apikeytest.NewMemoryStore()
	user, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())
	m := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live", Audit: func(ctx context.Context, e apikey.Event) error {
		fmt.Println(e.Kind, e.UserID)
		return nil
	}})
	k, _, _ := m.Issue(ctx, user, apikey.IssueOptions{Name: "laptop"})
	m.Roll(ctx, k.ID, time.Hour)
	m.Revoke(ctx, k.ID)
	m.Revoke(ctx, k.ID) // already revoked: not reported again
	// Output:
	// key.issued 1
	// key.rolled 1
	// key.revoked 1
}
