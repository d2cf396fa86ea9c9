package app_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"html"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/secretscan"
	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/ratelimit"
)

// githubKeys stands in for GitHub's key server: one ECDSA P-256 key,
// generated for the test, published on loopback in GitHub's format.
type githubKeys struct {
	id   string
	priv *ecdsa.PrivateKey
	url  string
}

func startGitHubKeys(t *testing.T) *githubKeys {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	g := &githubKeys{id: "test-key-" + rand.Text()[:8], priv: priv}
	body, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{
		"key_identifier": g.id, "key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "is_current": true,
	}}})
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(ks.Close)
	g.url = ks.URL + "/meta/public_keys/secret_scanning"
	return g
}

// sign returns GitHub's signature of body by key.
func sign(t *testing.T, key *ecdsa.PrivateKey, body []byte) string {
	t.Helper()
	sum := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// leakReport posts a secret scanning report as GitHub does, with the headers
// given (none: unsigned).
func leakReport(t *testing.T, s *testServer, body []byte, keyID, sig string) apiResponse {
	t.Helper()
	var hdr []string
	if keyID != "" {
		hdr = append(hdr, secretscan.HeaderKeyID, keyID)
	}
	if sig != "" {
		hdr = append(hdr, secretscan.HeaderSignature, sig)
	}
	return call(t, s.URL, "", "POST", "/github/secret-scanning", string(body), hdr...)
}

func userID(t *testing.T, s *testServer, email string) int64 {
	t.Helper()
	id, found, err := s.Store().UserByEmail(t.Context(), email)
	if err != nil || !found {
		t.Fatalf("UserByEmail(%s) = %v, %v", email, found, err)
	}
	return id
}

// events returns the user's security log, newest first.
func events(t *testing.T, s *testServer, userID int64) []audit.Event {
	t.Helper()
	evs, _, err := s.AuditLog().List(t.Context(), userID, audit.Page{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func countKind(evs []audit.Event, k audit.Kind) int {
	n := 0
	for _, e := range evs {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// TestSecretScanning: GitHub reports a live key found in public, signed
// by its key; the key is refused by the API at once, its owner gets one
// mail saying where it was found, and the log one leak. A redelivery gets
// the same answer and changes nothing; an unsigned or mis-signed report
// is refused and changes nothing.
func TestSecretScanning(t *testing.T) {
	gh := startGitHubKeys(t)
	s := startServer(t, sqliteDB, app.Config{GitHubKeysURL: gh.url})
	ada := newCustomer(t, s, "ada@example.com")
	bob := newCustomer(t, s, "bob@example.com")
	const where = "https://github.com/ada/dotfiles/blob/abc123/.env"
	body, _ := json.Marshal([]map[string]string{
		{"token": ada.token, "type": "fav_test_api_key", "url": where, "source": "content"},
		{"token": tamper(ada.token), "type": "fav_test_api_key", "url": where, "source": "content"},
	})

	// Unsigned, signed by an unknown key, mis-signed: refused, nothing done.
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bobBody, _ := json.Marshal([]map[string]string{{"token": bob.token, "type": "fav_test_api_key", "url": where, "source": "content"}})
	for name, r := range map[string]apiResponse{
		"unsigned":        leakReport(t, s, bobBody, "", ""),
		"no signature":    leakReport(t, s, bobBody, gh.id, ""),
		"unknown key id":  leakReport(t, s, bobBody, "made-up", sign(t, gh.priv, bobBody)),
		"stranger's key":  leakReport(t, s, bobBody, gh.id, sign(t, stranger, bobBody)),
		"other body's":    leakReport(t, s, bobBody, gh.id, sign(t, gh.priv, body)),
		"tampered body":   leakReport(t, s, append(bytes.Clone(bobBody), ' '), gh.id, sign(t, gh.priv, bobBody)),
		"signature of []": leakReport(t, s, bobBody, gh.id, sign(t, gh.priv, []byte("[]"))),
	} {
		if r.status < 400 || r.status >= 500 {
			t.Errorf("%s report = %d %s, want 4xx", name, r.status, r.body)
		}
		if strings.Contains(string(r.body), "positive") {
			t.Errorf("%s report's answer says what the token is: %s", name, r.body)
		}
	}
	if r := bob.call(t, "GET", "/v1/me", ""); r.status != http.StatusOK {
		t.Fatalf("bob's key after refused reports = %d", r.status)
	}
	if n := s.Mail.count("bob@example.com"); n != 1 { // the sign-in link only
		t.Errorf("bob got %d mails, want only the sign-in link", n)
	}

	// Signed: ada's key is ours and revoked; the tampered one is not ours.
	sig := sign(t, gh.priv, body)
	r := leakReport(t, s, body, gh.id, sig)
	if r.status != http.StatusOK {
		t.Fatalf("signed report = %d %s", r.status, r.body)
	}
	var feedback []secretscan.Feedback
	r.json(t, &feedback)
	want := []secretscan.Feedback{
		{TokenRaw: ada.token, TokenType: "fav_test_api_key", Label: secretscan.TruePositive},
		{TokenRaw: tamper(ada.token), TokenType: "fav_test_api_key", Label: secretscan.FalsePositive},
	}
	if !slices.Equal(feedback, want) {
		t.Errorf("feedback = %+v, want %+v", feedback, want)
	}
	if r := ada.call(t, "GET", "/v1/me", ""); r.status != http.StatusUnauthorized {
		t.Errorf("the leaked key after the report = %d, want 401", r.status)
	}
	mail := s.Mail.waitMail(t, "ada@example.com", 2)
	if !strings.Contains(mail, where) || strings.Contains(mail, ada.token) {
		t.Errorf("leak mail does not name the URL, or holds the token:\n%s", mail)
	}
	uid := userID(t, s, "ada@example.com")
	evs := events(t, s, uid)
	if n := countKind(evs, audit.KeyLeaked); n != 1 {
		t.Fatalf("%d key.leaked events, want 1: %+v", n, evs)
	}
	for _, e := range evs {
		if e.Kind == audit.KeyLeaked || e.Kind == audit.KeyRevoked {
			if e.Actor.Kind != audit.ActorGitHub || e.Detail["url"] != where {
				t.Errorf("%s event = %+v, want actor github and the url", e.Kind, e)
			}
		}
	}

	// Redelivered: the same answer, no second mail, no second event.
	r2 := leakReport(t, s, body, gh.id, sig)
	if r2.status != http.StatusOK || !bytes.Equal(r2.body, r.body) {
		t.Errorf("redelivery = %d %s, want %d %s", r2.status, r2.body, r.status, r.body)
	}
	time.Sleep(100 * time.Millisecond)
	if n := s.Mail.count("ada@example.com"); n != 2 {
		t.Errorf("ada got %d mails after the redelivery, want 2 (sign-in link, leak)", n)
	}
	if evs := events(t, s, uid); countKind(evs, audit.KeyLeaked) != 1 || countKind(evs, audit.KeyRevoked) != 1 {
		t.Errorf("after the redelivery: %d leaked, %d revoked events, want 1 each", countKind(evs, audit.KeyLeaked), countKind(evs, audit.KeyRevoked))
	}
	if r := bob.call(t, "GET", "/v1/me", ""); r.status != http.StatusOK {
		t.Errorf("bob's key, never reported = %d", r.status)
	}
	// The dashboard says so.
	if dash := get(t, ada.web, s.URL+"/app"); !strings.Contains(dash.body, "key.leaked") {
		t.Errorf("the dashboard's security activity does not show the leak")
	}
}

// TestSecretScanningLimit: a stranger posting signed-looking reports is
// held to 60 a minute per client, and past that even a valid report is
// refused before its body is read or its signature checked.
func TestSecretScanningLimit(t *testing.T) {
	gh := startGitHubKeys(t)
	s := startServer(t, sqliteDB, app.Config{GitHubKeysURL: gh.url})
	body := []byte("[]")
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := sign(t, stranger, body)
	for i := range 60 {
		if r := leakReport(t, s, body, gh.id, forged); r.status != http.StatusUnauthorized {
			t.Fatalf("forged report %d = %d %s, want 401", i+1, r.status, r.body)
		}
	}
	r := leakReport(t, s, body, gh.id, sign(t, gh.priv, body))
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("report past the limit = %d (Retry-After %q) %s, want 429 with Retry-After", r.status, r.header.Get("Retry-After"), r.body)
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
		t.Errorf("429 Content-Type = %q, want problem+json", r.header.Get("Content-Type"))
	}
}

// TestSecretScanningFleet: a key reported to one instance is refused by
// the other within the fleet bound, though the other had it cached for
// 30 s.
func TestSecretScanningFleet(t *testing.T) {
	gh := startGitHubKeys(t)
	fleet := startFleet(t, 2, app.Config{GitHubKeysURL: gh.url})
	a, b := fleet[0], fleet[1]
	ada := newCustomer(t, a, "ada@example.com")
	if st := status(t, b, ada.token); st != http.StatusOK {
		t.Fatalf("the key through B = %d", st)
	}
	body, _ := json.Marshal([]map[string]string{{"token": ada.token, "type": "fav_test_api_key", "url": "https://github.com/x/y", "source": "content"}})
	if r := leakReport(t, a, body, gh.id, sign(t, gh.priv, body)); r.status != http.StatusOK {
		t.Fatalf("report to A = %d %s", r.status, r.body)
	}
	d := until(t, []*testServer{b}, func(s *testServer) bool { return status(t, s, ada.token) == http.StatusUnauthorized })
	if d > fleetBound {
		t.Errorf("B refused the leaked key after %v, want within %v", d, fleetBound)
	}
}

// kindMail counts the mails whose subject contains part, over servers.
func kindMail(servers []*testServer, part string) int {
	n := 0
	for _, s := range servers {
		s.Mail.mu.Lock()
		for _, m := range s.Mail.msgs {
			if strings.Contains(m.Subject, part) {
				n++
			}
		}
		s.Mail.mu.Unlock()
	}
	return n
}

// waitKindMail waits until exactly want mails with the subject part were
// sent by the servers together, and then a while longer, to see that no
// instance sends another.
func waitKindMail(t *testing.T, servers []*testServer, part string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for kindMail(servers, part) < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // several intervals of every instance
	if n := kindMail(servers, part); n != want {
		t.Errorf("%d mails %q, want %d", n, part, want)
	}
}

// TestExpiryWarnings: two instances on one database, each running the
// expiry notifier every 20 ms on a clock the test moves: a key issued on
// the dashboard to expire in 30 days gets one warning 7 days before and
// one a day before, and a rolled key one mail when its old token stops
// working; the expired key is in the security log once.
func TestExpiryWarnings(t *testing.T) {
	var clk clock
	fleet := startFleet(t, 2, app.Config{}, func(o *app.Options) {
		o.Now = clk.now
		o.ExpiryInterval = 20 * time.Millisecond
	})
	a := fleet[0]
	c := signUp(t, a, "ada@example.com")
	dash := get(t, c, a.URL+"/app")
	p := submit(t, c, dash, "/app/keys", url.Values{"name": {"expiring"}, "expires": {"30"}})
	if p.status != http.StatusOK || !newKeyRe.MatchString(p.body) {
		t.Fatalf("creating a key that expires = %d:\n%s", p.status, p.body)
	}
	tok := html.UnescapeString(newKeyRe.FindStringSubmatch(p.body)[1])
	tk, err := apikey.Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?s)<tr id="key-` + tk.ID + `">.*?</tr>`).FindString(p.body)
	if !strings.Contains(row, clk.now().Add(30*24*time.Hour).UTC().Format("2006-01-02")) {
		t.Errorf("the key's row does not show its expiry in 30 days:\n%s", row)
	}
	rolled := createKey(t, a, c, "rolled")
	rk, _ := apikey.Parse(rolled)
	if p := postForm(t, c, a.URL+"/app/keys/"+rk.ID+"/roll", nil); p.status != http.StatusOK {
		t.Fatalf("rolling = %d", p.status)
	}
	time.Sleep(100 * time.Millisecond)
	if n := kindMail(fleet, "FavoritesAPI key"); n != 0 {
		t.Fatalf("%d key mails before any is due", n)
	}

	clk.advance(25 * time.Hour) // the rolled key's grace (24 h) is over
	waitKindMail(t, fleet, "old token", 1)
	clk.advance(22 * 24 * time.Hour) // 30 d - 23 d 1 h: within 7 days
	waitKindMail(t, fleet, "expires in 7 days", 1)
	clk.advance(6*24*time.Hour + 12*time.Hour) // 11 h left
	waitKindMail(t, fleet, "expires within a day", 1)
	waitKindMail(t, fleet, "expires in 7 days", 1)
	clk.advance(12 * time.Hour) // expired
	uid := userID(t, a, "ada@example.com")
	deadline := time.Now().Add(10 * time.Second)
	for countKind(events(t, a, uid), audit.KeyExpired) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	evs := events(t, a, uid)
	if n := countKind(evs, audit.KeyExpired); n != 1 {
		t.Errorf("%d key.expired events, want 1", n)
	}
	for _, e := range evs {
		if e.Kind == audit.KeyExpired && (e.KeyID != tk.ID || e.Actor.Kind != audit.ActorSystem) {
			t.Errorf("expired event = %+v", e)
		}
	}
	if r := call(t, a.URL, tok, "GET", "/v1/me", ""); r.status != http.StatusUnauthorized {
		t.Errorf("the expired key = %d, want 401", r.status)
	}
	if mail := a.Mail.waitMail(t, "ada@example.com", 1); strings.Contains(mail, tok) {
		t.Error("a mail holds a token")
	}
}

// TestKeyNetworks: a key restricted to 10.0.0.0/8 on the dashboard is
// refused (403, address-not-allowed) from 127.0.0.1, served when a
// trusted proxy forwards a 10.x address, and refused when a client that
// is no trusted proxy forges the header. Its tags, metadata and
// environment are on the dashboard and in GET /v1/me.
func TestKeyNetworks(t *testing.T) {
	trusted := mustProxies(t, "127.0.0.1/32")
	for _, tc := range []struct {
		name    string
		proxies []netip.Prefix
		want    int
	}{{"trusted proxy", trusted, http.StatusOK}, {"no trusted proxy", nil, http.StatusForbidden}} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, sqliteDB, app.Config{TrustedProxies: tc.proxies})
			c := signUp(t, s, "ada@example.com")
			dash := get(t, c, s.URL+"/app")
			p := submit(t, c, dash, "/app/keys", url.Values{
				"name": {"office"}, "networks": {"10.0.0.0/8"}, "tags": {"team:billing, ci"},
				"metadata": {`{"customer": "<acme>"}`},
			})
			m := newKeyRe.FindStringSubmatch(p.body)
			if p.status != http.StatusOK || m == nil {
				t.Fatalf("creating a restricted key = %d:\n%s", p.status, p.body)
			}
			tok := html.UnescapeString(m[1])
			for _, want := range []string{"10.0.0.0/8", "team:billing", `class="env">test<`, `{&#34;customer&#34;:&#34;&lt;acme&gt;&#34;}`} {
				if !strings.Contains(p.body, want) {
					t.Errorf("the key list lacks %s", want)
				}
			}
			r := call(t, s.URL, tok, "GET", "/v1/me", "")
			if r.status != http.StatusForbidden {
				t.Fatalf("from 127.0.0.1 = %d %s, want 403", r.status, r.body)
			}
			if typ, _ := r.problem(t)["type"].(string); typ != apikey.AddressNotAllowedType {
				t.Errorf("problem type = %q, want %q", typ, apikey.AddressNotAllowedType)
			}
			if doc := get(t, c, s.URL+apikey.AddressNotAllowedType); doc.status != http.StatusOK || !strings.Contains(doc.body, "restricted it to some networks") {
				t.Errorf("GET %s = %d, want the page documenting the problem type", apikey.AddressNotAllowedType, doc.status)
			}
			r = call(t, s.URL, tok, "GET", "/v1/me", "", "X-Forwarded-For", "10.1.2.3")
			if r.status != tc.want {
				t.Fatalf("forwarded from 10.1.2.3 = %d %s, want %d", r.status, r.body, tc.want)
			}
			if r.status != http.StatusOK {
				return
			}
			var me struct {
				Key struct {
					Environment     string
					Metadata        map[string]string
					Tags            []string
					AllowedNetworks []string `json:"allowed_networks"`
				}
			}
			r.json(t, &me)
			if me.Key.Environment != "test" || me.Key.Metadata["customer"] != "<acme>" ||
				!slices.Equal(me.Key.Tags, []string{"team:billing", "ci"}) || !slices.Equal(me.Key.AllowedNetworks, []string{"10.0.0.0/8"}) {
				t.Errorf("GET /v1/me key = %+v", me.Key)
			}
		})
	}
}

// TestKeyFormRefusals: bad metadata, networks and expiries are refused
// with a message, and no key is issued.
func TestKeyFormRefusals(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	c := signUp(t, s, "ada@example.com")
	for name, form := range map[string]url.Values{
		"metadata not an object": {"metadata": {`[1,2]`}},
		"metadata not JSON":      {"metadata": {`{"a":`}},
		"metadata too large":     {"metadata": {`{"a":"` + strings.Repeat("x", 1100) + `"}`}},
		"bad network":            {"networks": {"10.0.0.0/33"}},
		"every network":          {"networks": {"0.0.0.0/0"}},
		"bad tag":                {"tags": {"-x"}},
		"bad expiry":             {"expires": {"7"}},
	} {
		form.Set("name", "k")
		p := submit(t, c, get(t, c, s.URL+"/app"), "/app/keys", form)
		if p.status != http.StatusUnprocessableEntity || newKeyRe.MatchString(p.body) || !strings.Contains(p.body, `id="error"`) {
			t.Errorf("%s: %d, want 422 with a message and no key", name, p.status)
		}
	}
}

// forwardingTransport sends every request as from a client behind a
// proxy: X-Forwarded-For and a user agent of its own.
type forwardingTransport struct{ client, userAgent string }

func (f forwardingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.client)
	r.Header.Set("User-Agent", f.userAgent)
	return http.DefaultTransport.RoundTrip(r)
}

// secretRe finds what must never be in the log: API keys, sign-in link
// tokens, session cookies.
var secretRe = regexp.MustCompile(`fav_(live|test)_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}`)

// TestAuditTrail walks an account through its life, behind a trusted
// proxy, and finds every event the issue lists in the security log, with
// the user as actor (or Stripe, GitHub, the system) and the address and
// user agent the proxy forwarded; without a trusted proxy, a forged
// header is not believed. No row holds a key, a link token or a code.
func TestAuditTrail(t *testing.T) {
	for _, b := range []backend{sqliteDB, postgresDB} {
		t.Run(string(b), func(t *testing.T) { testAuditTrail(t, b) })
	}
}

func testAuditTrail(t *testing.T, b backend) {
	var clk clock
	gh := startGitHubKeys(t)
	const client, ua = "203.0.113.7", "Audit-Browser/1.0 <script>"
	s := startServer(t, b, app.Config{TrustedProxies: mustProxies(t, "127.0.0.1/32"), GitHubKeysURL: gh.url},
		func(o *app.Options) { o.Now = clk.now; o.ExpiryInterval = 20 * time.Millisecond })
	var secrets []string

	// Sign-up: link requested, checkout, subscription and plan, sign-in.
	c := browser(t)
	c.Transport = forwardingTransport{client, ua}
	landing := get(t, c, s.URL+"/")
	p := submit(t, c, landing, "/signup", url.Values{"email": {"ada@example.com"}, "plan": {"hobby"}})
	checkout := get(t, c, resolve(t, s.URL, p.location))
	submit(t, c, checkout, "dev-checkout", nil)
	link := s.Mail.waitLink(t, "ada@example.com", 1)
	secrets = append(secrets, tokenOf(link))
	followLink(t, c, link)

	// Keys: issued (with an expiry), rolled, revoked, leaked, expired.
	tok := createKey(t, s, c, "first")
	k, _ := apikey.Parse(tok)
	dash := get(t, c, s.URL+"/app")
	p = submit(t, c, dash, "/app/keys", url.Values{"name": {"short-lived"}, "expires": {"30"}})
	expiring := html.UnescapeString(newKeyRe.FindStringSubmatch(p.body)[1])
	p = postForm(t, c, s.URL+"/app/keys/"+k.ID+"/roll", nil)
	rolled := html.UnescapeString(newKeyRe.FindStringSubmatch(p.body)[1])
	leaked := createKey(t, s, c, "leaked")
	revoked := createKey(t, s, c, "revoked")
	rk, _ := apikey.Parse(revoked)
	postForm(t, c, s.URL+"/app/keys/"+rk.ID+"/revoke", nil)
	body, _ := json.Marshal([]map[string]string{{"token": leaked, "type": "fav_test_api_key", "url": "https://github.com/ada/x?key=" + leaked, "source": "content"}})
	if r := leakReport(t, s, body, gh.id, sign(t, gh.priv, body)); r.status != http.StatusOK {
		t.Fatalf("report = %d %s", r.status, r.body)
	}
	secrets = append(secrets, tok, expiring, rolled, leaked, revoked)

	// Plan change, email change (requested, confirmed), sign-out of one
	// session, sign-out everywhere.
	if p := submit(t, c, get(t, c, s.URL+"/app"), "/billing/plan", url.Values{"plan": {"pro"}}); p.status >= 400 {
		t.Fatalf("changing the plan = %d:\n%s", p.status, p.body)
	}
	before := s.Mail.count("ada@example.org")
	if p := postForm(t, c, s.URL+"/app/account/email", url.Values{"email": {"ada@example.org"}}); p.status != http.StatusOK {
		t.Fatalf("email change = %d", p.status)
	}
	change := s.Mail.waitMail(t, "ada@example.org", before+1)
	changeLink := regexp.MustCompile(`https?://\S+`).FindString(change)
	secrets = append(secrets, tokenOf(changeLink))
	confirm := get(t, c, changeLink)
	if p := submit(t, c, confirm, "/", nil); p.status >= 400 {
		t.Fatalf("confirming the email change = %d:\n%s", p.status, p.body)
	}
	other := browser(t)
	other.Transport = forwardingTransport{client, ua}
	before = s.Mail.count("ada@example.org")
	if p := postForm(t, other, s.URL+"/login", url.Values{"email": {"ada@example.org"}}); p.status != http.StatusOK {
		t.Fatalf("POST /login = %d", p.status)
	}
	link = s.Mail.waitLink(t, "ada@example.org", before+1)
	secrets = append(secrets, tokenOf(link))
	followLink(t, other, link)
	if p := postForm(t, other, s.URL+"/logout", nil); p.status >= 400 {
		t.Fatalf("sign-out = %d", p.status)
	}
	// Confirming the new address signed the first browser out: in again.
	before = s.Mail.count("ada@example.org")
	postForm(t, c, s.URL+"/login", url.Values{"email": {"ada@example.org"}})
	link = s.Mail.waitLink(t, "ada@example.org", before+1)
	secrets = append(secrets, tokenOf(link))
	followLink(t, c, link)
	if p := postForm(t, c, s.URL+"/app/sessions/revoke", nil); p.status != http.StatusSeeOther || p.location != "/login" {
		t.Fatalf("sign out everywhere = %d to %q", p.status, p.location)
	}

	// The short-lived key expires; then ada signs in again and deletes
	// the account.
	clk.advance(31 * 24 * time.Hour)
	uid := userID(t, s, "ada@example.org")
	deadline := time.Now().Add(10 * time.Second)
	for countKind(events(t, s, uid), audit.KeyExpired) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	before = s.Mail.count("ada@example.org")
	postForm(t, c, s.URL+"/login", url.Values{"email": {"ada@example.org"}})
	link = s.Mail.waitLink(t, "ada@example.org", before+1)
	secrets = append(secrets, tokenOf(link))
	followLink(t, c, link)
	activity := get(t, c, s.URL+"/app")
	if !strings.Contains(activity.body, "Security activity") || !strings.Contains(activity.body, client) ||
		!strings.Contains(activity.body, "Audit-Browser/1.0 &lt;script&gt;") {
		t.Errorf("the dashboard's security activity lacks the events' address or escaped user agent")
	}
	if p := postForm(t, c, s.URL+"/app/account/delete", url.Values{"confirm": {"ada@example.org"}}); p.status != http.StatusSeeOther {
		t.Fatalf("deleting the account = %d:\n%s", p.status, p.body)
	}

	evs := events(t, s, uid)
	for _, kind := range []audit.Kind{
		audit.SignInLinkRequested, audit.SignIn, audit.SignOut, audit.SignOutEverywhere,
		audit.CheckoutCompleted, audit.SubscriptionChanged, audit.PlanChanged,
		audit.KeyIssued, audit.KeyRolled, audit.KeyRevoked, audit.KeyExpired, audit.KeyLeaked,
		audit.EmailChangeRequested, audit.EmailChanged, audit.AccountDeleted,
	} {
		if countKind(evs, kind) == 0 {
			t.Errorf("no %s event", kind)
		}
	}
	for _, e := range evs {
		switch e.Actor.Kind {
		case audit.ActorSystem, audit.ActorGitHub, audit.ActorStripe:
		case audit.ActorUser:
			if e.Actor.ID != strconv.FormatInt(uid, 10) {
				t.Errorf("%s by user %q, want %d", e.Kind, e.Actor.ID, uid)
			}
		default:
			if e.Kind != audit.SubscriptionChanged && e.Kind != audit.PlanChanged && e.Kind != audit.CheckoutCompleted {
				t.Errorf("%s by %+v", e.Kind, e.Actor)
			}
		}
		if e.Actor.Kind == audit.ActorUser && (e.IP.String() != client || e.UserAgent != ua) {
			t.Errorf("%s from %v %q, want %s %q (through the trusted proxy)", e.Kind, e.IP, e.UserAgent, client, ua)
		}
	}
	assertNoSecrets(t, s, secrets)

	// Without a trusted proxy, the forged header is not believed.
	s2 := startServer(t, b, app.Config{})
	c2 := browser(t)
	c2.Transport = forwardingTransport{client, ua}
	postForm(t, c2, s2.URL+"/login", url.Values{"email": {"bob@example.com"}})
	followLink(t, c2, s2.Mail.waitLink(t, "bob@example.com", 1))
	evs2 := events(t, s2, userID(t, s2, "bob@example.com"))
	if countKind(evs2, audit.SignIn) == 0 {
		// Without it, the loop below checks nothing.
		t.Fatalf("no %s event on the server without a trusted proxy", audit.SignIn)
	}
	for _, e := range evs2 {
		if e.IP.String() != "127.0.0.1" {
			t.Errorf("%s from %v without a trusted proxy, want 127.0.0.1", e.Kind, e.IP)
		}
	}
}

// tokenOf returns the token parameter of a link.
func tokenOf(link string) string {
	u, err := url.Parse(strings.TrimRight(link, ".,)"))
	if err != nil {
		return link
	}
	return u.Query().Get("token")
}

// assertNoSecrets exports the whole log, as the CLI does, and looks for
// the secrets and anything shaped like an API key.
func assertNoSecrets(t *testing.T, s *testServer, secrets []string) {
	t.Helper()
	var buf bytes.Buffer
	if err := s.AuditLog().Export(context.Background(), &buf, 0); err != nil {
		t.Fatal(err)
	}
	export := buf.String()
	if export == "" {
		t.Fatal("empty export")
	}
	for _, sec := range secrets {
		if len(sec) >= 16 && strings.Contains(export, sec) {
			t.Errorf("the security log holds a secret %.12s…", sec)
		}
	}
	if m := secretRe.FindString(export); m != "" {
		t.Errorf("the security log holds an API key %.16s…", m)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(export), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		if d, ok := e["detail"].(map[string]any); ok {
			for k := range d {
				if strings.Contains(k, "token") || strings.Contains(k, "code") || strings.Contains(k, "secret") || strings.Contains(k, "hash") {
					t.Errorf("detail key %q in %s", k, line)
				}
			}
		}
	}
}

// TestSignOutEverywhere: the dashboard's button signs out this browser
// and the other one, and the log says so.
func TestSignOutEverywhere(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	laptop := signUp(t, s, "ada@example.com")
	phone := signInAs(t, s, "ada@example.com", "Phone/1.0")
	if p := get(t, phone, s.URL+"/app"); p.status != http.StatusOK {
		t.Fatalf("the phone's dashboard = %d", p.status)
	}
	old := sessionCookie(t, laptop, s.URL)
	if old == nil {
		t.Fatal("no session cookie on the laptop")
	}
	p := submit(t, laptop, get(t, laptop, s.URL+"/app"), "/app/sessions/revoke", nil)
	if p.status != http.StatusSeeOther || p.location != "/login" {
		t.Fatalf("sign out everywhere = %d to %q", p.status, p.location)
	}
	// The answer cleared the laptop's cookie, so a jar that obeys it
	// proves nothing about the session: replay the old cookie too.
	replay := browser(t)
	u, _ := url.Parse(s.URL)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: old.Name, Value: old.Value, Path: "/", Secure: true}})
	for name, c := range map[string]*http.Client{"laptop": laptop, "phone": phone, "laptop's old cookie": replay} {
		if p := get(t, c, s.URL+"/app"); p.status == http.StatusOK {
			t.Errorf("the %s is still signed in", name)
		}
	}
	evs := events(t, s, userID(t, s, "ada@example.com"))
	if n := countKind(evs, audit.SignOutEverywhere); n != 1 {
		t.Errorf("%d signed-out-everywhere events, want 1", n)
	}
}

func mustProxies(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	p, err := ratelimit.ParseTrustedProxies(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLifecycleConfig: AUDIT_RETENTION in days or as a duration, a day at
// least; GITHUB_KEYS_URL an http(s) URL, GitHub's by default.
func TestLifecycleConfig(t *testing.T) {
	cfg, err := app.ConfigFromEnv(func(string) string { return "" })
	if err != nil || cfg.AuditRetention != app.DefaultAuditRetention || cfg.GitHubKeysURL != secretscan.DefaultKeysURL {
		t.Fatalf("defaults: %v, %v, %v", cfg.AuditRetention, cfg.GitHubKeysURL, err)
	}
	for v, want := range map[[2]string]time.Duration{
		{"90d", ""}: 90 * 24 * time.Hour, {"48h", ""}: 48 * time.Hour, {"1h", ""}: -1, {"0d", ""}: -1, {"x", ""}: -1,
		{"", "http://127.0.0.1:1/keys"}: app.DefaultAuditRetention, {"", "ftp://example.com/keys"}: -1, {"", "/keys"}: -1,
	} {
		env := map[string]string{"AUDIT_RETENTION": v[0], "GITHUB_KEYS_URL": v[1]}
		cfg, err := app.ConfigFromEnv(func(k string) string { return env[k] })
		if want < 0 {
			if err == nil {
				t.Errorf("%v accepted", v)
			}
			continue
		}
		if err != nil || cfg.AuditRetention != want {
			t.Errorf("%v: retention %v, %v; want %v", v, cfg.AuditRetention, err, want)
		}
	}
}
