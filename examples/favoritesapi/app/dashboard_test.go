package app_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/examples/favoritesapi/app"
)

// TestDashboardKeys drives the key forms of /app: roll keeps the old token
// working, revoke ends it, another customer's key cannot be touched, and
// bad input is refused on the page.
func TestDashboardKeys(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	ada := newCustomer(t, s, "ada@example.com")
	bob := newCustomer(t, s, "bob@example.com")
	adaKey, _ := apikey.Parse(ada.token)
	bobKey, _ := apikey.Parse(bob.token)

	// Bob cannot roll or revoke Ada's key: it does not exist for him.
	for _, action := range []string{"roll", "revoke"} {
		p := postForm(t, bob.web, s.URL+"/app/keys/"+adaKey.ID+"/"+action, nil)
		if p.status != http.StatusNotFound || !strings.Contains(p.body, "no such key") {
			t.Errorf("bob %s ada's key: %d", action, p.status)
		}
	}
	if r := ada.call(t, "GET", "/v1/me", ""); r.status != 200 {
		t.Fatalf("ada's key after bob's attempts: %d", r.status)
	}

	// Roll: a new token, and the old one still works during the grace.
	p := postForm(t, ada.web, s.URL+"/app/keys/"+adaKey.ID+"/roll", nil)
	m := newKeyRe.FindStringSubmatch(p.body)
	if p.status != 200 || m == nil || !strings.Contains(p.body, "24 hours") {
		t.Fatalf("roll: %d\n%s", p.status, p.body)
	}
	for name, tok := range map[string]string{"rolled": m[1], "old": ada.token} {
		if r := call(t, s.URL, tok, "GET", "/v1/me", ""); r.status != 200 {
			t.Errorf("%s token after the roll: %d", name, r.status)
		}
	}

	// Revoke ends both; a revoked key cannot be rolled.
	if p := postForm(t, ada.web, s.URL+"/app/keys/"+adaKey.ID+"/revoke", nil); p.status != http.StatusSeeOther || p.location != "/app" {
		t.Fatalf("revoke: %d to %q", p.status, p.location)
	}
	for name, tok := range map[string]string{"rolled": m[1], "old": ada.token} {
		if r := call(t, s.URL, tok, "GET", "/v1/me", ""); r.status != 401 {
			t.Errorf("%s token after revoking: %d, want 401", name, r.status)
		}
	}
	if p := postForm(t, ada.web, s.URL+"/app/keys/"+adaKey.ID+"/roll", nil); p.status != http.StatusConflict {
		t.Errorf("rolling a revoked key: %d, want 409", p.status)
	}
	if r := bob.call(t, "GET", "/v1/me", ""); r.status != 200 || !strings.Contains(string(r.body), bobKey.ID) {
		t.Errorf("bob's key after ada's changes: %d", r.status)
	}

	// Bad names, and the cap on keys per account.
	for _, name := range []string{"", "   ", "tab\there", strings.Repeat("k", apikey.MaxNameLen+1)} {
		if p := postForm(t, ada.web, s.URL+"/app/keys", url.Values{"name": {name}}); p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, `id="error"`) {
			t.Errorf("key name %q: %d", name, p.status)
		}
	}
	for i := 2; i <= 50; i++ { // Ada holds one (revoked) key
		if p := postForm(t, ada.web, s.URL+"/app/keys", url.Values{"name": {fmt.Sprint("key ", i)}}); p.status != 200 {
			t.Fatalf("key %d: %d", i, p.status)
		}
	}
	if p := postForm(t, ada.web, s.URL+"/app/keys", url.Values{"name": {"one too many"}}); p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, "at most 50") {
		t.Errorf("the 51st key: %d", p.status)
	}
}

// TestKeyFormsLimit: the key forms are limited per client, not per
// account: a client that signs in as many accounts (two cookie jars here)
// still gets 100 key actions an hour, refused ones included, and then
// 429 on every account's dashboard.
func TestKeyFormsLimit(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	ada := newCustomer(t, s, "ada@example.com") // one key action each
	bob := newCustomer(t, s, "bob@example.com")
	for i := 2; i < 100; i++ {
		if p := postForm(t, ada.web, s.URL+"/app/keys/nope/revoke", nil); p.status != http.StatusNotFound {
			t.Fatalf("key action %d: %d, want 404", i+1, p.status)
		}
	}
	p := postForm(t, bob.web, s.URL+"/app/keys", url.Values{"name": {"one too many"}})
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" || !strings.Contains(p.body, "Too many key changes") {
		t.Fatalf("bob's key action past the client's limit: %d (Retry-After %q), want 429 on the dashboard", p.status, p.header.Get("Retry-After"))
	}
	if strings.Contains(p.body, "one too many") {
		t.Errorf("the refused key was created")
	}
}
