package app_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/apikit/apikit/examples/favoritesapi/app"
)

var changeLink = regexp.MustCompile(`https?://[^\s"<>]+/login/email/verify\?token=[A-Za-z0-9_-]+`)

// TestAccountChangeEmail: the account page sends a link to the new
// address, answers the same whether or not the address is taken, and
// only following the link changes the address; the old address is told,
// the API keys keep working, the new address signs in, and the old one
// no longer reaches the account.
func TestAccountChangeEmail(t *testing.T) {
	for _, b := range []backend{sqliteDB, postgresDB} {
		t.Run(string(b), func(t *testing.T) {
			s := startServer(t, b, app.Config{})
			ada := newCustomer(t, s, "ada@example.com")
			newCustomer(t, s, "bob@example.com")

			dash := get(t, ada.web, s.URL+"/app")
			if !strings.Contains(dash.body, `href="/app/account"`) {
				t.Fatalf("the dashboard does not link to /app/account:\n%s", dash.body)
			}
			acct := get(t, ada.web, s.URL+"/app/account")
			if acct.status != http.StatusOK || !strings.Contains(acct.body, "ada@example.com") {
				t.Fatalf("GET /app/account = %d:\n%s", acct.status, acct.body)
			}
			// Signed out: sent to sign in.
			if p := get(t, browser(t), s.URL+"/app/account"); p.status != http.StatusSeeOther {
				t.Errorf("GET /app/account signed out = %d, want 303", p.status)
			}

			// An address of another account gets the same answer as a free one.
			taken := submit(t, ada.web, acct, "/app/account/email", url.Values{"email": {"bob@example.com"}})
			free := submit(t, ada.web, acct, "/app/account/email", url.Values{"email": {"ada.new@example.com"}})
			norm := func(p page, addr string) string { return strings.ReplaceAll(p.body, addr, "ADDR") }
			if taken.status != http.StatusOK || free.status != http.StatusOK || norm(taken, "bob@example.com") != norm(free, "ada.new@example.com") {
				t.Fatalf("taken = %d, free = %d; the pages differ beyond the address:\n%s\n---\n%s", taken.status, free.status, taken.body, free.body)
			}
			// Bob's link is refused when followed (only its reader learns why).
			bobMail := s.Mail.waitMail(t, "bob@example.com", 2)
			if l := changeLink.FindString(bobMail); l == "" {
				t.Fatalf("no change link in the email to bob:\n%s", bobMail)
			}

			// Cross-origin posts are refused.
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/app/account/email", strings.NewReader("email=x%40example.com"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			if resp, err := ada.web.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("cross-site POST /app/account/email = %v %v, want 403", resp, err)
			}

			// Nothing changed yet: the old address still signs in.
			if got := get(t, ada.web, s.URL+"/app/account"); !strings.Contains(got.body, `id="account-email">ada@example.com<`) {
				t.Fatalf("the address changed before the link was followed:\n%s", got.body)
			}
			mail := s.Mail.waitMail(t, "ada.new@example.com", 1)
			link := changeLink.FindString(mail)
			if link == "" {
				t.Fatalf("no change link in:\n%s", mail)
			}
			other := browser(t) // the link is followed on another device
			confirm := get(t, other, link)
			done := submit(t, other, confirm, "/login/email/verify", nil)
			if done.status != http.StatusOK {
				t.Fatalf("confirming the change = %d:\n%s", done.status, done.body)
			}
			// The old address is told; the change ended every session.
			notice := s.Mail.waitMail(t, "ada@example.com", 2)
			if !strings.Contains(notice, "changed") || loginLink.MatchString(notice) {
				t.Errorf("the notice to the old address:\n%s", notice)
			}
			if p := get(t, ada.web, s.URL+"/app"); p.status != http.StatusSeeOther {
				t.Errorf("GET /app with a session from before the change = %d, want 303 to sign in", p.status)
			}
			// The key still works, and the API says the new address.
			var me meBody
			r := ada.call(t, "GET", "/v1/me", "")
			r.json(t, &me)
			if r.status != http.StatusOK || me.User.Email != "ada.new@example.com" {
				t.Errorf("GET /v1/me = %d %s, want 200 with the new address", r.status, r.body)
			}
			// The new address signs in.
			c := browser(t)
			before := s.Mail.count("ada.new@example.com")
			postForm(t, c, s.URL+"/login", url.Values{"email": {"ada.new@example.com"}})
			followLink(t, c, s.Mail.waitLink(t, "ada.new@example.com", before+1))
			if p := get(t, c, s.URL+"/app"); p.status != http.StatusOK || !strings.Contains(p.body, "ada.new@example.com") {
				t.Errorf("signed in with the new address: GET /app = %d", p.status)
			}
			// The old address gets nothing that signs in to the account.
			assertNoAccount(t, s, "ada@example.com")
		})
	}
}

// assertNoAccount: asking /login for the address sends nothing that
// signs anyone in to the old account. With a free plan, sign-up is open:
// the link, if one is sent, makes a new, empty account (not the old one,
// whose keys are not listed), so it is followed and checked.
func assertNoAccount(t *testing.T, s *testServer, email string, oldKeyIDs ...string) {
	t.Helper()
	n := s.Mail.count(email)
	c := browser(t)
	p := postForm(t, c, s.URL+"/login", url.Values{"email": {email}})
	if p.status >= 400 {
		t.Fatalf("POST /login for %s = %d", email, p.status)
	}
	link := s.Mail.waitLink(t, email, n+1)
	followLink(t, c, link)
	dash := get(t, c, s.URL+"/app")
	if dash.status != http.StatusOK || !strings.Contains(dash.body, "No keys yet.") {
		t.Errorf("the link sent to %s opened an account with keys:\n%s", email, dash.body)
	}
	for _, id := range oldKeyIDs {
		if strings.Contains(dash.body, id) {
			t.Errorf("the link sent to %s opened the old account (key %s)", email, id)
		}
	}
}
