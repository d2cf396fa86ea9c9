package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/internal/testkit/stripemock"
	"github.com/apikit/apikit/ratelimit"
)

// userCount reads how many accounts exist, straight from the table.
func userCount(t *testing.T, s *testServer) int {
	t.Helper()
	var n int
	if err := s.Store().DB().GetContext(t.Context(), &n, `SELECT count(*) FROM users`); err != nil {
		t.Fatal(err)
	}
	return n
}

// signedOut asserts that the browser holds no session: the dashboard sends
// it to sign in, and creating a key there is refused.
func signedOut(t *testing.T, s *testServer, c *http.Client, who string) {
	t.Helper()
	if ck := sessionCookie(t, c, s.URL); ck != nil {
		t.Errorf("%s holds a session cookie %q", who, ck.Name)
	}
	if p := get(t, c, s.URL+"/app"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login") {
		t.Errorf("%s: GET /app = %d to %q, want 303 to /login", who, p.status, p.location)
	}
	if p := postForm(t, c, s.URL+"/app/keys", url.Values{"name": {"stolen"}}); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login") {
		t.Errorf("%s: POST /app/keys = %d to %q, want 303 to /login", who, p.status, p.location)
	}
}

// TestSignupTakeoverDevMode replays the account takeover through the real
// HTTP surface with two cookie jars: an attacker starts a sign-up for the
// victim's address and parks the dev checkout; the victim signs up, signs
// in by email, creates a key and stores data; then the attacker completes
// the parked checkout. The attacker gets a page that says where the link
// went, no session, and no way into the account; the victim keeps theirs.
func TestSignupTakeoverDevMode(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	const victim = "victim@example.org"
	attacker := browser(t)
	p := submit(t, attacker, get(t, attacker, s.URL+"/"), "/signup", url.Values{"email": {victim}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("attacker's POST /signup = %d", p.status)
	}
	parked := get(t, attacker, resolve(t, s.URL, p.location))
	if parked.status != http.StatusOK {
		t.Fatalf("dev checkout page = %d", parked.status)
	}
	if n := userCount(t, s); n != 0 {
		t.Fatalf("a sign-up that was not completed created %d accounts", n)
	}

	v := newCustomer(t, s, victim)
	if r := v.call(t, "POST", "/v1/favorites", `{"name":"mine","url":"https://example.org/"}`); r.status != http.StatusCreated {
		t.Fatalf("victim's write: %d", r.status)
	}
	mails := s.Mail.count(victim)

	done := submit(t, attacker, parked, "dev-checkout", nil)
	if done.status != http.StatusOK || !strings.Contains(done.body, "v•••@example.org") {
		t.Errorf("completing the parked checkout = %d:\n%s\nwant 200 and a page naming v•••@example.org", done.status, done.body)
	}
	signedOut(t, s, attacker, "the attacker after completing the parked checkout")
	s.Mail.waitLink(t, victim, mails+1) // the sign-in link went to the victim, through the queue
	// Replaying the completed form changes nothing and sends nothing.
	submit(t, attacker, parked, "dev-checkout", nil)
	signedOut(t, s, attacker, "the attacker after replaying the form")
	time.Sleep(100 * time.Millisecond)
	if got := s.Mail.count(victim); got != mails+1 {
		t.Errorf("a replayed checkout sent mail again (%d)", got)
	}
	// The victim is untouched: still signed in, key still working.
	if p := get(t, v.web, s.URL+"/app"); p.status != http.StatusOK {
		t.Errorf("the victim's dashboard after the attack: %d", p.status)
	}
	if r := v.call(t, "GET", "/v1/favorites", ""); r.status != http.StatusOK {
		t.Errorf("the victim's key after the attack: %d", r.status)
	}
}

// TestSignupTakeoverStripe is the same attack against real Stripe objects
// (stripe-mock) and signed webhooks: the attacker's sign-up stores nothing,
// the victim's completes through the webhook, and the attacker's visit to
// the success page of the parked session signs nobody in.
func TestSignupTakeoverStripe(t *testing.T) {
	mock := stripemock.Start(t)
	s := startServer(t, sqliteDB, app.Config{
		StripeSecretKey: "sk_test_favoritesapi", StripeWebhookSecret: webhookSecret,
		StripePriceID: "price_favoritesapi", StripeAPIURL: mock,
	})
	const victim = "victim@example.org"
	attacker := browser(t)
	p := postForm(t, attacker, s.URL+"/signup", url.Values{"email": {victim}})
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "https://") {
		t.Fatalf("attacker's POST /signup = %d to %q, want 303 to Checkout", p.status, p.location)
	}
	// A flood of sign-ups for random addresses leaves no trace either.
	for i := range 15 {
		postForm(t, browser(t), s.URL+"/signup", url.Values{"email": {fmt.Sprintf("random%d@example.net", i)}})
	}
	if n := userCount(t, s); n != 0 {
		t.Fatalf("sign-ups that never completed created %d accounts", n)
	}

	// The victim's own purchase completes: Stripe reports it, with the
	// address apikit put on the session.
	stripe := &stripeSender{t: t, url: s.URL, base: time.Now().Add(-time.Minute)}
	if st := stripe.send("checkout.session.completed", map[string]any{
		"id": "cs_victim", "object": "checkout.session", "mode": "subscription", "status": "complete",
		"customer": "cus_victim", "subscription": "sub_victim",
		"metadata": map[string]any{"apikit_signup_email": victim}, "customer_details": map[string]any{"email": victim},
	}); st != 200 {
		t.Fatalf("checkout.session.completed: %d", st)
	}
	web := signIn(t, s, victim)
	createKey(t, s, web, "victim's key")

	// The attacker now visits the success page of a Checkout session.
	r := get(t, attacker, s.URL+"/billing/success?session_id=cs_parked_by_attacker")
	if r.status == http.StatusSeeOther && r.location == "/app" {
		t.Errorf("the success page sent the attacker to the dashboard")
	}
	signedOut(t, s, attacker, "the attacker after the success page")
	if p := get(t, web, s.URL+"/app"); p.status != http.StatusOK {
		t.Errorf("the victim's dashboard after the attack: %d", p.status)
	}

	// A webhook with only the buyer's email (no mark of apikit's) creates
	// and links nothing.
	before := userCount(t, s)
	if st := stripe.send("checkout.session.completed", map[string]any{
		"id": "cs_foreign", "object": "checkout.session", "mode": "subscription", "status": "complete",
		"customer": "cus_foreign", "subscription": "sub_foreign", "customer_details": map[string]any{"email": "someone@example.net"},
	}); st != 200 {
		t.Fatalf("foreign checkout.session.completed: %d", st)
	}
	if _, found, _ := s.Store().UserByEmail(context.Background(), "someone@example.net"); found || userCount(t, s) != before {
		t.Error("a Checkout session without apikit's marks created an account")
	}
}

// TestTrustedProxies: per-client limits key on the client the trusted
// proxies report, and on the TCP peer when the peer is no trusted proxy
// (anyone can send X-Forwarded-For).
func TestTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		proxies string
		// whether client B, behind the same proxy, is refused once client A
		// has spent the per-client budget
		sharedBudget bool
	}{
		{"behind a trusted proxy", "127.0.0.0/8", false},
		{"no trusted proxy", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := app.Config{}
			if tc.proxies != "" {
				p, err := ratelimit.ParseTrustedProxies(tc.proxies)
				if err != nil {
					t.Fatal(err)
				}
				cfg.TrustedProxies = p
			}
			s := startServer(t, sqliteDB, cfg)
			post := func(xff string, i int) int {
				t.Helper()
				form := url.Values{"email": {fmt.Sprintf("u%d@example.com", i)}}
				req, err := http.NewRequest(http.MethodPost, s.URL+"/login", strings.NewReader(form.Encode()))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Forwarded-For", xff)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			refusedA := 0
			for i := range 35 {
				if post("198.51.100.1", i) == http.StatusTooManyRequests {
					refusedA++
				}
			}
			if refusedA == 0 {
				t.Fatalf("35 sign-in requests from one client for different addresses: none refused; want the per-client limit (30 an hour)")
			}
			gotB := post("203.0.113.9", 100)
			if tc.sharedBudget && gotB != http.StatusTooManyRequests {
				t.Errorf("client B with a forged X-Forwarded-For: %d; want 429 (the header of an untrusted peer is ignored)", gotB)
			}
			if !tc.sharedBudget && gotB != http.StatusOK {
				t.Errorf("client B behind the trusted proxy: %d; want 200 (its own budget)", gotB)
			}
		})
	}
}
