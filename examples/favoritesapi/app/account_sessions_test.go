package app_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/store"
)

// clock is a test clock that starts at the real time and can be moved on.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

var endSessionRe = regexp.MustCompile(`action="/app/account/sessions/([^/"]+)/end"`)

// signInAs signs an existing user in, in a new browser with its own user
// agent, by the emailed link.
func signInAs(t testing.TB, s *testServer, email, userAgent string) *http.Client {
	t.Helper()
	c := browser(t)
	c.Transport = uaTransport(userAgent)
	before := s.Mail.count(email)
	if p := postForm(t, c, s.URL+"/login", url.Values{"email": {email}}); p.status != http.StatusOK {
		t.Fatalf("POST /login = %d", p.status)
	}
	followLink(t, c, s.Mail.waitLink(t, email, before+1))
	return c
}

type uaTransport string

func (ua uaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", string(ua))
	return http.DefaultTransport.RoundTrip(r)
}

// TestAccountSessions: the account page lists the user's sessions (this
// browser marked), ends one or all others, and a session of another user
// cannot be ended by its reference (404, and it keeps working).
func TestAccountSessions(t *testing.T) {
	for _, b := range []backend{sqliteDB, postgresDB} {
		t.Run(string(b), func(t *testing.T) {
			s := startServer(t, b, app.Config{})
			newCustomer(t, s, "ada@example.com")
			bob := newCustomer(t, s, "bob@example.com")
			laptop := signInAs(t, s, "ada@example.com", "Laptop-Browser/1.0")
			phone := signInAs(t, s, "ada@example.com", "Phone-Browser/2.0")

			p := get(t, laptop, s.URL+"/app/account")
			if p.status != http.StatusOK {
				t.Fatalf("GET /app/account = %d", p.status)
			}
			for _, want := range []string{"Laptop-Browser/1.0", "Phone-Browser/2.0", "this browser", "127.0.0.1"} {
				if !strings.Contains(p.body, want) {
					t.Errorf("the sessions list lacks %q:\n%s", want, p.body)
				}
			}
			if strings.Contains(p.body, "bob@example.com") {
				t.Error("ada's page names bob")
			}
			// Bob's session, by its reference, from ada's browser: 404.
			bobRefs := endSessionRe.FindAllStringSubmatch(get(t, signInAs(t, s, "bob@example.com", "Bob/1"), s.URL+"/app/account").body, -1)
			if len(bobRefs) == 0 {
				t.Fatal("bob's page lists no other session")
			}
			for _, m := range bobRefs {
				if got := postForm(t, laptop, s.URL+"/app/account/sessions/"+m[1]+"/end", nil); got.status != http.StatusNotFound {
					t.Errorf("ending bob's session from ada's browser = %d, want 404", got.status)
				}
			}
			if got := get(t, bob.web, s.URL+"/app"); got.status != http.StatusOK {
				t.Errorf("bob's session after ada's attempt: GET /app = %d", got.status)
			}
			if got := postForm(t, laptop, s.URL+"/app/account/sessions/nosuchref/end", nil); got.status != http.StatusNotFound {
				t.Errorf("ending an unknown session = %d, want 404", got.status)
			}
			// Signed out: no session is ended.
			if got := postForm(t, browser(t), s.URL+"/app/account/sessions/"+bobRefs[0][1]+"/end", nil); got.status != http.StatusSeeOther {
				t.Errorf("ending a session signed out = %d, want 303 to sign in", got.status)
			}

			// End the phone's session from the laptop: the row that names it.
			var phoneRef string
			for _, row := range regexp.MustCompile(`(?s)<tr class="session[^"]*">(.*?)</tr>`).FindAllStringSubmatch(p.body, -1) {
				if strings.Contains(row[1], "Phone-Browser") {
					if m := endSessionRe.FindStringSubmatch(row[1]); m != nil {
						phoneRef = m[1]
					}
				}
			}
			if phoneRef == "" {
				t.Fatalf("no end button for the phone's session:\n%s", p.body)
			}
			if got := submit(t, laptop, p, "/app/account/sessions/"+phoneRef+"/end", nil); got.status != http.StatusSeeOther {
				t.Fatalf("ending the phone's session = %d:\n%s", got.status, got.body)
			}
			if got := get(t, phone, s.URL+"/app"); got.status != http.StatusSeeOther {
				t.Errorf("the phone after its session was ended: GET /app = %d, want 303", got.status)
			}
			if got := get(t, laptop, s.URL+"/app/account"); got.status != http.StatusOK || strings.Contains(got.body, "Phone-Browser") {
				t.Errorf("the laptop's page after ending the phone = %d, still lists it: %v", got.status, strings.Contains(got.body, "Phone-Browser"))
			}

			// End all others: the first browser (from sign-up) goes, the laptop stays.
			tablet := signInAs(t, s, "ada@example.com", "Tablet/3")
			p = get(t, laptop, s.URL+"/app/account")
			if got := submit(t, laptop, p, "/app/account/sessions/end-others", nil); got.status != http.StatusOK || !strings.Contains(got.body, "Signed out 2 other") {
				t.Errorf("ending the other sessions = %d:\n%s", got.status, got.body)
			}
			if got := get(t, tablet, s.URL+"/app"); got.status != http.StatusSeeOther {
				t.Errorf("the tablet after end-others: GET /app = %d, want 303", got.status)
			}
			if got := get(t, laptop, s.URL+"/app"); got.status != http.StatusOK {
				t.Errorf("the laptop after end-others: GET /app = %d, want 200", got.status)
			}
			// Cross-origin: refused.
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/app/account/sessions/end-others", nil)
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			if resp, err := laptop.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
				t.Errorf("cross-site POST end-others = %v %v, want 403", resp, err)
			}
		})
	}
}

// TestAccountDelete: deleting needs a sign-in within 10 minutes and the
// address typed; then the subscription is canceled, the keys refused, the
// sessions ended, the favorites gone, the cookie cleared, and /login for
// the address opens nothing of the old account.
func TestAccountDelete(t *testing.T) {
	for _, b := range []backend{sqliteDB, postgresDB} {
		t.Run(string(b), func(t *testing.T) {
			clk := &clock{}
			s := startServer(t, b, app.Config{}, func(o *app.Options) { o.Now = clk.now; o.KeyCacheTTL = time.Millisecond })
			ada := newCustomer(t, s, "ada@example.com")
			bob := newCustomer(t, s, "bob@example.com")
			if r := ada.call(t, "POST", "/v1/favorites", `{"name":"Go","url":"https://go.dev"}`); r.status != http.StatusCreated {
				t.Fatalf("saving a favorite = %d %s", r.status, r.body)
			}
			bob.call(t, "POST", "/v1/favorites", `{"name":"Go","url":"https://go.dev"}`)
			other := signInAs(t, s, "ada@example.com", "Other/1")

			// Stale: asked to sign in again, nothing deleted.
			clk.advance(11 * time.Minute)
			p := get(t, ada.web, s.URL+"/app/account")
			if !strings.Contains(p.body, `id="reauth"`) || strings.Contains(p.body, `action="/app/account/delete"`) {
				t.Fatalf("a sign-in 11 minutes old: the page offers deletion:\n%s", p.body)
			}
			got := postForm(t, ada.web, s.URL+"/app/account/delete", url.Values{"confirm": {"ada@example.com"}})
			if got.status != http.StatusForbidden || !strings.Contains(got.body, "sign in again") {
				t.Fatalf("deleting with a stale sign-in = %d:\n%s", got.status, got.body)
			}
			if r := ada.call(t, "GET", "/v1/me", ""); r.status != http.StatusOK {
				t.Fatalf("the key after a refused deletion = %d", r.status)
			}
			// Sign in again from the page's own form, in this browser.
			before := s.Mail.count("ada@example.com")
			if sent := submit(t, ada.web, p, "/login", nil); sent.status != http.StatusOK {
				t.Fatalf("the page's sign-in form = %d", sent.status)
			}
			followLink(t, ada.web, s.Mail.waitLink(t, "ada@example.com", before+1))
			p = get(t, ada.web, s.URL+"/app/account")
			if !strings.Contains(p.body, `action="/app/account/delete"`) {
				t.Fatalf("a fresh sign-in: no deletion form:\n%s", p.body)
			}
			// The address must be typed.
			if got := submit(t, ada.web, p, "/app/account/delete", url.Values{"confirm": {"bob@example.com"}}); got.status != http.StatusUnprocessableEntity {
				t.Errorf("deleting with the wrong address typed = %d, want 422", got.status)
			}
			// (submit sends every input, the unchecked "at period end" box too.)
			resp := submit(t, ada.web, p, "/app/account/delete", url.Values{"confirm": {"ada@example.com"}, "when": {""}})
			if resp.status != http.StatusSeeOther || resp.location != "/?account=deleted" {
				t.Fatalf("deleting = %d to %q:\n%s", resp.status, resp.location, resp.body)
			}
			if home := get(t, ada.web, s.URL+resp.location); !strings.Contains(home.body, `id="notice"`) || strings.Contains(home.body, "ada@example.com") {
				t.Errorf("the landing page after deletion shows no notice, or the address")
			}
			u, _ := url.Parse(s.URL)
			for _, c := range ada.web.Jar.Cookies(u) {
				if c.Name == "__Host-session" {
					t.Errorf("the session cookie is still set")
				}
			}
			// Keys refused, sessions ended, favorites gone, subscription canceled.
			deadline := time.Now().Add(5 * time.Second)
			for ada.call(t, "GET", "/v1/me", "").status != http.StatusUnauthorized {
				if time.Now().After(deadline) {
					t.Fatal("the deleted account's key is still accepted")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if got := get(t, other, s.URL+"/app"); got.status != http.StatusSeeOther {
				t.Errorf("another browser of the deleted account: GET /app = %d, want 303", got.status)
			}
			db := s.Store().DB()
			var n int
			if err := db.Get(&n, `SELECT COUNT(*) FROM favorites`); err != nil || n != 1 {
				t.Errorf("favorites left = %d (%v), want bob's 1", n, err)
			}
			if err := db.Get(&n, `SELECT COUNT(*) FROM billing_subscriptions WHERE status = 'canceled'`); err != nil || n != 1 {
				t.Errorf("canceled subscriptions = %d (%v), want ada's, kept as a record", n, err)
			}
			if err := db.Get(&n, db.Rebind(`SELECT COUNT(*) FROM users WHERE email = ?`), "ada@example.com"); err != nil || n != 0 {
				t.Errorf("users with the address = %d (%v)", n, err)
			}
			if !strings.Contains(s.Logs.String(), `msg=audit event="account deleted"`) || strings.Contains(auditLines(s.Logs.String()), "ada@") {
				t.Errorf("no audit line, or it names the address:\n%s", auditLines(s.Logs.String()))
			}
			if r := bob.call(t, "GET", "/v1/me", ""); r.status != http.StatusOK {
				t.Errorf("bob's key after ada's deletion = %d", r.status)
			}
			assertNoAccount(t, s, "ada@example.com")
		})
	}
}

func auditLines(logs string) string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "msg=audit") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAccountActionsLimited: the account page's POSTs are limited to 30
// per client per hour (429 with Retry-After), whoever is signed in.
func TestAccountActionsLimited(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	ada := newCustomer(t, s, "ada@example.com")
	bob := newCustomer(t, s, "bob@example.com")
	for i := range 30 {
		if p := postForm(t, ada.web, s.URL+"/app/account/sessions/end-others", nil); p.status != http.StatusOK {
			t.Fatalf("account action %d = %d", i+1, p.status)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/app/account/sessions/end-others", nil)
	resp, err := bob.web.Do(req) // the same client, another account
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("the 31st account action from the client = %d (Retry-After %q), want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestFavoritesCascade: the favorites table's foreign key deletes a
// user's favorites with the user (DeleteAccount deletes them explicitly
// too), on both databases.
func TestFavoritesCascade(t *testing.T) {
	for _, b := range []backend{sqliteDB, postgresDB} {
		t.Run(string(b), func(t *testing.T) {
			s := startServer(t, b, app.Config{})
			tok, err := s.Provision(t.Context(), "ada@example.com", "k")
			if err != nil {
				t.Fatal(err)
			}
			if r := call(t, s.URL, tok, "POST", "/v1/favorites", `{"name":"Go","url":"https://go.dev"}`); r.status != http.StatusCreated {
				t.Fatalf("saving a favorite = %d %s", r.status, r.body)
			}
			id, _, err := s.Store().UserByEmail(t.Context(), "ada@example.com")
			if err != nil {
				t.Fatal(err)
			}
			if found, err := s.Store().DeleteUser(t.Context(), id, store.DeleteUserOptions{}); err != nil || !found {
				t.Fatalf("DeleteUser = %v, %v", found, err)
			}
			var n int
			if err := s.Store().DB().Get(&n, `SELECT COUNT(*) FROM favorites`); err != nil || n != 0 {
				t.Errorf("favorites after DeleteUser = %d (%v), want 0 by the cascade", n, err)
			}
		})
	}
}
