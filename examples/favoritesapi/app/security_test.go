package app_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/internal/testkit/fakeclock"
	"github.com/apikit/apikit/ratelimit"
)

// sessionCookie returns the session cookie the browser holds for base.
func sessionCookie(t testing.TB, c *http.Client, base string) *http.Cookie {
	t.Helper()
	u, _ := url.Parse(base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "__Host-session" {
			return ck
		}
	}
	return nil
}

// TestAttacks drives the attacks a public API and website see, each
// against the real handlers.
func TestAttacks(t *testing.T) {
	// The attacks here are not about the plan's limits (TestRateLimit is).
	s := startServer(t, sqliteDB, app.Config{RateLimit: ratelimit.MustParseLimit("1000/s")})
	ada := newCustomer(t, s, "ada@example.com")

	t.Run("SQLMetacharactersAreData", func(t *testing.T) {
		evil := `Robert'); DROP TABLE favorites; -- \" ; SELECT * FROM users WHERE '1'='1`
		body := fmt.Sprintf(`{"name":%q,"url":"https://example.com/?q=%%27%%3B--","tags":[%q,"%%", "_"]}`, evil, "' OR 1=1 --")
		r := ada.call(t, "POST", "/v1/favorites", body)
		if r.status != 201 {
			t.Fatalf("POST: %d %s", r.status, r.body)
		}
		var f favorite
		r.json(t, &f)
		var got favorite
		ada.call(t, "GET", "/v1/favorites/"+f.ID, "").json(t, &got)
		if got.Name != evil || got.Tags[0] != "' OR 1=1 --" || got.Tags[1] != "%" {
			t.Errorf("stored %+v", got)
		}
		for _, q := range []string{"limit=1;DROP TABLE users", "cursor=' OR 1=1 --", "limit=1%20OR%201=1"} {
			if r := ada.call(t, "GET", "/v1/favorites?"+q, ""); r.status != 400 {
				t.Errorf("GET ?%s = %d, want 400", q, r.status)
			}
		}
		if r := ada.call(t, "GET", "/v1/favorites", ""); r.status != 200 {
			t.Errorf("the table survived? GET = %d", r.status)
		}
		p := get(t, browser(t), s.URL+"/")
		if p.status != 200 {
			t.Errorf("landing after injection attempts: %d", p.status)
		}
	})

	t.Run("PathTraversalInIDs", func(t *testing.T) {
		for _, id := range []string{"..%2F..%2Fetc%2Fpasswd", "..", "%2e%2e", "0123456789abcde%00", "0123456789abcdef'", strings.Repeat("a", 5000)} {
			r := ada.call(t, "GET", "/v1/favorites/"+id, "")
			if r.status != 404 && r.status != 400 && r.status != 301 {
				t.Errorf("GET /v1/favorites/%.40s = %d", id, r.status)
			}
			r = ada.call(t, "DELETE", "/v1/favorites/"+id, "")
			if r.status != 404 && r.status != 400 && r.status != 301 {
				t.Errorf("DELETE /v1/favorites/%.40s = %d", id, r.status)
			}
		}
		p := postForm(t, ada.web, s.URL+"/app/keys/..%2F..%2Fadmin/revoke", nil)
		if p.status != 404 && p.status != 400 {
			t.Errorf("revoke with a traversal id: %d", p.status)
		}
	})

	t.Run("KeysInQueryStrings", func(t *testing.T) {
		for _, q := range []string{"api_key=", "key=", "token=", "access_token="} {
			r := call(t, s.URL, "", "GET", "/v1/me?"+q+url.QueryEscape(ada.token), "")
			if r.status != 400 {
				t.Errorf("?%s<token> = %d, want 400", q, r.status)
			}
		}
	})

	t.Run("OversizedHeadersAndBodies", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := s.HTTPServer()
		go hs.Serve(ln)
		defer hs.Close()
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+ada.token)
		req.Header.Set("X-Padding", strings.Repeat("a", app.MaxHeaderBytes+8192))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("oversized header: %d, want 431", resp.StatusCode)
		}
		r := call(t, s.URL, "Bearer-"+strings.Repeat("x", 10000), "GET", "/v1/me", "")
		if r.status != 401 {
			t.Errorf("a 10 KB bearer token: %d, want 401", r.status)
		}
		big := url.Values{"email": {strings.Repeat("a", 1<<20) + "@example.com"}}
		for _, path := range []string{"/login", "/signup"} {
			p := postForm(t, browser(t), s.URL+path, big)
			if p.status != 400 && p.status != 413 {
				t.Errorf("POST %s with a 1 MB email: %d", path, p.status)
			}
		}
		if p := postForm(t, ada.web, s.URL+"/app/keys", url.Values{"name": {strings.Repeat("k", 1<<20)}}); p.status != 413 {
			t.Errorf("POST /app/keys with a 1 MB name: %d", p.status)
		}
	})

	t.Run("CRLFAndLookalikeEmails", func(t *testing.T) {
		for _, email := range []string{"ada@example.com\r\nBcc: victim@example.com", "ada@example.com\nX: y", "ada@exa\x00mple.com", "<ada@example.com>", "ada"} {
			for _, path := range []string{"/login", "/signup"} {
				p := postForm(t, browser(t), s.URL+path, url.Values{"email": {email}})
				if p.status != 400 && p.status != 422 {
					t.Errorf("POST %s email=%q: %d, want 400", path, email, p.status)
				}
			}
		}
		// A look-alike address (Cyrillic "а") is not Ada's account: asking
		// for its link mails Ada nothing.
		before := s.Mail.count("ada@example.com")
		postForm(t, browser(t), s.URL+"/login", url.Values{"email": {"\u0430da@example.com"}})
		postForm(t, browser(t), s.URL+"/login", url.Values{"email": {"ada@examp\u04cfe.com"}})
		time.Sleep(200 * time.Millisecond)
		if n := s.Mail.count("ada@example.com"); n != before {
			t.Errorf("a look-alike address mailed Ada's account %d times", n-before)
		}
	})

	t.Run("CrossOriginFormPosts", func(t *testing.T) {
		tok, _ := apikey.Parse(ada.token)
		for _, path := range []string{"/app/keys", "/app/keys/" + tok.ID + "/revoke", "/app/keys/" + tok.ID + "/roll",
			"/logout", "/login", "/login/verify", "/login/code", "/signup", "/billing/portal", "/billing/plan", "/billing/dev-checkout",
			"/app/account/email", "/app/account/sessions/x/end", "/app/account/sessions/end-others", "/app/account/delete",
			"/app/sessions/revoke"} {
			req, _ := http.NewRequest("POST", s.URL+path, strings.NewReader("name=evil&email=evil%40example.com"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", "https://evil.example")
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			resp, err := ada.web.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("cross-origin POST %s: %d, want 403", path, resp.StatusCode)
			}
		}
		keys, _ := s.Keys().List(t.Context(), mustUserID(t, s, "ada@example.com"))
		if len(keys) != 1 {
			t.Errorf("Ada has %d keys after a cross-origin POST /app/keys, want 1", len(keys))
		}
		// Sign out everywhere (and the others) ended nothing.
		if p := get(t, ada.web, s.URL+"/app"); p.status != http.StatusOK {
			t.Errorf("Ada's dashboard after the cross-origin posts: %d, want 200 (still signed in)", p.status)
		}
	})

	t.Run("SessionFixation", func(t *testing.T) {
		// An attacker plants a session cookie of their choosing; signing
		// in does not adopt it.
		c := browser(t)
		u, _ := url.Parse(s.URL)
		planted := &http.Cookie{Name: "__Host-session", Value: "attacker-chosen-session-id-0123456789abcdef", Path: "/", Secure: true}
		c.Jar.SetCookies(u, []*http.Cookie{planted})
		if p := get(t, c, s.URL+"/app"); p.status != http.StatusSeeOther {
			t.Errorf("/app with a planted cookie: %d, want 303 to /login", p.status)
		}
		signInWith(t, s, c, "ada@example.com")
		got := sessionCookie(t, c, s.URL)
		if got == nil || got.Value == planted.Value {
			t.Fatalf("after sign-in the session cookie is %v, the planted one", got)
		}
	})

	t.Run("LoggedOutCookieIsDead", func(t *testing.T) {
		c := browser(t)
		signInWith(t, s, c, "ada@example.com")
		old := sessionCookie(t, c, s.URL)
		if old == nil {
			t.Fatal("no session cookie after sign-in")
		}
		dash := get(t, c, s.URL+"/app")
		if p := submit(t, c, dash, "/logout", nil); p.status != http.StatusSeeOther {
			t.Fatalf("logout: %d", p.status)
		}
		// Replay the old cookie from a fresh client.
		replay := browser(t)
		u, _ := url.Parse(s.URL)
		replay.Jar.SetCookies(u, []*http.Cookie{{Name: old.Name, Value: old.Value, Path: "/", Secure: true}})
		if p := get(t, replay, s.URL+"/app"); p.status != http.StatusSeeOther {
			t.Errorf("/app with a logged-out cookie: %d, want 303 to /login", p.status)
		}
	})

	t.Run("NoSecretsInLogs", func(t *testing.T) {
		// Everything above ran with logs at debug level. Add a roll and
		// failed verifications, then look for every secret seen.
		tok, _ := apikey.Parse(ada.token)
		dash := get(t, ada.web, s.URL+"/app")
		p := submit(t, ada.web, dash, "/app/keys/"+tok.ID+"/roll", nil)
		rolled := newKeyRe.FindStringSubmatch(p.body)
		if rolled == nil {
			t.Fatalf("roll: %d %s", p.status, p.body)
		}
		call(t, s.URL, tamper(ada.token), "GET", "/v1/me", "")
		call(t, s.URL, ada.token, "GET", "/v1/me", "")
		c := browser(t)
		link := signInWith(t, s, c, "ada@example.com")
		secrets := map[string]string{
			"API key":        ada.token,
			"API key secret": ada.token[len(ada.token)-38 : len(ada.token)-6],
			"rolled key":     rolled[1],
			"login token":    link[strings.Index(link, "token=")+6:],
			"session id":     sessionCookie(t, c, s.URL).Value,
		}
		logs := s.Logs.String()
		if !strings.Contains(logs, "level=DEBUG") && !strings.Contains(logs, "level=INFO") {
			t.Fatalf("no logs captured:\n%s", logs)
		}
		for what, secret := range secrets {
			if strings.Contains(logs, secret) {
				t.Errorf("the %s appears in the logs", what)
			}
		}
		sc := bufio.NewScanner(strings.NewReader(logs))
		lines := 0
		for sc.Scan() {
			lines++
		}
		t.Logf("checked %d log lines for %d secrets", lines, len(secrets))
	})
}

func mustUserID(t testing.TB, s *testServer, email string) int64 {
	t.Helper()
	id, found, err := s.Store().UserByEmail(t.Context(), email)
	if err != nil || !found {
		t.Fatalf("user %s: found %v, %v", email, found, err)
	}
	return id
}

// signInWith signs the browser in through the emailed link and returns
// the link.
func signInWith(t testing.TB, s *testServer, c *http.Client, email string) string {
	t.Helper()
	before := s.Mail.count(email)
	login := get(t, c, s.URL+"/login")
	submit(t, c, login, "/login", url.Values{"email": {email}})
	link := s.Mail.waitLink(t, email, before+1)
	followLink(t, c, link)
	return link
}

// followLink signs the browser in with an emailed link: the confirmation
// page, then its POST.
func followLink(t testing.TB, c *http.Client, link string) {
	t.Helper()
	confirm := get(t, c, link)
	if confirm.status != http.StatusOK {
		t.Fatalf("GET %s = %d", link, confirm.status)
	}
	p := submit(t, c, confirm, "/login/verify", nil)
	if p.status != http.StatusSeeOther || p.location != "/app" {
		t.Fatalf("POST /login/verify = %d to %q, want 303 /app:\n%s", p.status, p.location, p.body)
	}
}

// TestKeyEnvironment: a deployment accepts only the keys of its own
// environment, so a key from a free dev or test deployment never opens a
// paid one, and it says why it refuses the other kind.
func TestKeyEnvironment(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{}) // dev mode: fav_test keys
	ctx := t.Context()
	tok, err := s.Provision(ctx, "env@example.com", "test key")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "fav_test_") {
		t.Fatalf("dev mode issued %q, want a fav_test key", tok[:9])
	}
	if r := call(t, s.URL, tok, "GET", "/v1/me", ""); r.status != http.StatusOK {
		t.Fatalf("the deployment's own key: %d %s", r.status, r.body)
	}
	uid, _, err := s.Store().UserByEmail(ctx, "env@example.com")
	if err != nil {
		t.Fatal(err)
	}
	_, live, err := s.Keys().Issue(ctx, uid, apikey.IssueOptions{Name: "live", Prefix: "fav_live"})
	if err != nil {
		t.Fatal(err)
	}
	r := call(t, s.URL, live.Reveal(), "GET", "/v1/me", "")
	if r.status != http.StatusUnauthorized {
		t.Fatalf("a fav_live key on a test deployment: %d, want 401", r.status)
	}
	if detail, _ := r.problem(t)["detail"].(string); !strings.Contains(detail, "fav_test keys only") {
		t.Errorf("refusal of a fav_live key says %q; want it to name the accepted prefix", detail)
	}
}

// TestForgedKeyFlood: well-formed keys are easy to forge (the checksum is
// public), so the keys the cache cannot answer reach the database a bounded
// number of times per client; the customer's own key keeps working.
func TestForgedKeyFlood(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	tok, err := s.Provision(t.Context(), "flood@example.com", "k")
	if err != nil {
		t.Fatal(err)
	}
	if r := call(t, s.URL, tok, "GET", "/v1/me", ""); r.status != http.StatusOK {
		t.Fatalf("own key: %d", r.status)
	}
	statuses := map[int]int{}
	for range 100 {
		forged, err := apikey.Generate("fav_test")
		if err != nil {
			t.Fatal(err)
		}
		statuses[call(t, s.URL, forged.Reveal(), "GET", "/v1/me", "").status]++
	}
	if statuses[http.StatusUnauthorized] > 60 || statuses[http.StatusTooManyRequests] < 40 {
		t.Errorf("100 forged keys from one client: %v; want at most 60 looked up (401), the rest 429", statuses)
	}
	if r := call(t, s.URL, tok, "GET", "/v1/me", ""); r.status != http.StatusOK {
		t.Errorf("own (cached) key during the flood: %d, want 200", r.status)
	}
}

// TestPageLimit: a stranger sending forged session cookies gets
// app.PagesPerMinute requests a minute to the site's pages (each of which
// reads a session) and then 429 with Retry-After, refused before the
// read; the stranger's requests without cookies cost no read and pass
// uncounted; a signed-in user at another address is served as before;
// /healthz holds each client to a budget of its own; a minute later the
// stranger is served again.
func TestPageLimit(t *testing.T) {
	clock := fakeclock.New(time.Now())
	s := startServer(t, sqliteDB, app.Config{TrustedProxies: mustProxies(t, "127.0.0.1/32")},
		func(o *app.Options) { o.Now = clock.Now })
	ada := signUp(t, s, "ada@example.com") // from 127.0.0.1
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	stranger := func(path string, cookie bool) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", s.URL+path, nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		if cookie {
			req.AddCookie(&http.Cookie{Name: "__Host-session", Value: strings.Repeat("A", 43)})
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	rejected := func() int { return metric(t, s, "apikit_login_sessions_rejected") }

	before := rejected()
	for i := range app.PagesPerMinute {
		if r := stranger("/app", true); r.StatusCode == http.StatusTooManyRequests {
			t.Fatalf("forged-cookie request %d of %d refused", i+1, app.PagesPerMinute)
		}
	}
	if got := rejected() - before; got != app.PagesPerMinute {
		t.Fatalf("%d forged cookies read, want %d", got, app.PagesPerMinute)
	}
	for _, path := range []string{"/app", "/app/account", "/login", "/problems/quota-exceeded"} {
		if r := stranger(path, true); r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Errorf("GET %s past the budget = %d (Retry-After %q), want 429", path, r.StatusCode, r.Header.Get("Retry-After"))
		}
	}
	if got := rejected() - before; got != app.PagesPerMinute {
		t.Errorf("refused requests read %d sessions, want none", got-app.PagesPerMinute)
	}
	if r := stranger("/", false); r.StatusCode != http.StatusOK {
		t.Errorf("GET / without cookies past the budget = %d, want 200", r.StatusCode)
	}
	// Ada, signed in at another address, under normal use.
	for range 20 {
		if p := get(t, ada, s.URL+"/app"); p.status != http.StatusOK {
			t.Fatalf("Ada's dashboard = %d, want 200", p.status)
		}
	}

	for i := range app.PagesPerMinute {
		if r := stranger("/healthz", false); r.StatusCode != http.StatusOK {
			t.Fatalf("health check %d of %d = %d, want 200", i+1, app.PagesPerMinute, r.StatusCode)
		}
	}
	if r := stranger("/healthz", false); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("health check past the budget = %d, want 429", r.StatusCode)
	}
	if p := get(t, ada, s.URL+"/healthz"); p.status != http.StatusOK {
		t.Errorf("Ada's health check = %d, want 200", p.status)
	}

	clock.Advance(time.Minute)
	if r := stranger("/app", true); r.StatusCode == http.StatusTooManyRequests {
		t.Errorf("a minute later: 429")
	}
}

// TestParkedFormsAfterSignOut: every form of the dashboard and of the
// account page, fetched while signed in and submitted after signing out,
// by the same browser or by another replaying the old session cookie, is
// sent to sign in and changes nothing.
func TestParkedFormsAfterSignOut(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	ada := newCustomer(t, s, "ada@example.com")
	// A second session, so that the account page shows the forms that
	// end the others.
	phone := browser(t)
	signInWith(t, s, phone, "ada@example.com")
	dash := get(t, ada.web, s.URL+"/app")
	acct := get(t, ada.web, s.URL+"/app/account")
	old := sessionCookie(t, ada.web, s.URL)
	if dash.status != http.StatusOK || acct.status != http.StatusOK || old == nil {
		t.Fatalf("signed in: GET /app = %d, GET /app/account = %d, session cookie %v", dash.status, acct.status, old)
	}
	if p := submit(t, ada.web, dash, "/logout", nil); p.status != http.StatusSeeOther {
		t.Fatalf("logout: %d", p.status)
	}
	replay := browser(t)
	u, _ := url.Parse(s.URL)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: old.Name, Value: old.Value, Path: "/", Secure: true}})

	for who, c := range map[string]*http.Client{"the same browser": ada.web, "the old cookie replayed": replay} {
		for _, f := range []struct {
			page   page
			action string
			fill   url.Values
		}{
			{dash, "/app/keys", url.Values{"name": {"parked"}}},
			{dash, "/roll", nil},
			{dash, "/revoke", nil},
			{dash, "/app/sessions/revoke", nil},
			{acct, "/app/account/email", url.Values{"email": {"ada.new@example.com"}}},
			{acct, "/app/account/sessions/end-others", nil},
			{acct, "/end", nil}, // the phone's session
			{acct, "/app/account/delete", url.Values{"confirm": {"ada@example.com"}}},
		} {
			if p := submit(t, c, f.page, f.action, f.fill); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login") {
				t.Errorf("%s: parked form %s = %d to %q, want 303 to /login", who, f.action, p.status, p.location)
			}
		}
	}

	if r := ada.call(t, "GET", "/v1/me", ""); r.status != http.StatusOK {
		t.Errorf("Ada's key after the parked forms: %d, want 200", r.status)
	}
	if p := get(t, phone, s.URL+"/app"); p.status != http.StatusOK {
		t.Errorf("Ada's phone after the parked forms: GET /app = %d, want 200 (still signed in)", p.status)
	}
	keys, err := s.Keys().List(t.Context(), mustUserID(t, s, "ada@example.com"))
	if err != nil || len(keys) != 1 {
		t.Errorf("Ada has %d keys after the parked forms (%v), want 1", len(keys), err)
	}
	if n := s.Mail.count("ada.new@example.com"); n != 0 {
		t.Errorf("the parked email change mailed the new address %d times", n)
	}
}
