package secretscan_test

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
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
	"github.com/apikit/apikit/apikey/secretscan"
	"github.com/apikit/apikit/internal/testkit/fakeclock"
)

// signer is a key pair of the test's own, standing for one of GitHub's.
type signer struct {
	id   string
	priv *ecdsa.PrivateKey
}

func newSigner(t testing.TB, id string) signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{id: id, priv: priv}
}

func (s signer) sign(t testing.TB, body []byte) string {
	t.Helper()
	sum := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, s.priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func (s signer) pem(t testing.TB) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&s.priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// keyServer serves GitHub's key document on 127.0.0.1 and counts fetches.
type keyServer struct {
	mu      sync.Mutex
	signers []signer
	down    bool
	fetches atomic.Int32
	srv     *httptest.Server
}

func newKeyServer(t *testing.T, signers ...signer) *keyServer {
	ks := &keyServer{signers: signers}
	ks.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.fetches.Add(1)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		if ks.down {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		type key struct {
			KeyIdentifier string `json:"key_identifier"`
			Key           string `json:"key"`
			IsCurrent     bool   `json:"is_current"`
		}
		var doc struct {
			PublicKeys []key `json:"public_keys"`
		}
		for i, s := range ks.signers {
			doc.PublicKeys = append(doc.PublicKeys, key{s.id, s.pem(t), i == len(ks.signers)-1})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(ks.srv.Close)
	return ks
}

func (ks *keyServer) set(down bool, signers ...signer) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.down, ks.signers = down, signers
}

// recorder collects notices and audit events.
type recorder struct {
	mu      sync.Mutex
	notices []apikey.Notice
	events  []apikey.Event
	fail    error
}

func (r *recorder) notify(_ context.Context, n apikey.Notice) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.notices = append(r.notices, n)
	return nil
}

func (r *recorder) audit(_ context.Context, e apikey.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) snapshot() ([]apikey.Notice, []apikey.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.notices), slices.Clone(r.events)
}

type fixture struct {
	st    *apikeytest.MemoryStore
	clock *fakeclock.Clock
	v     *apikey.Verifier
	m     *apikey.Manager
	rec   *recorder
	h     *secretscan.Handler
	srv   *httptest.Server
	ks    *keyServer
	gh    signer
	user  int64
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{st: apikeytest.NewMemoryStore(), clock: fakeclock.New(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)), rec: &recorder{}}
	f.gh = newSigner(t, "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a")
	f.ks = newKeyServer(t, newSigner(t, "old-key"), f.gh)
	f.v = apikey.NewVerifier(f.st, apikey.VerifierOptions{Now: f.clock.Now})
	t.Cleanup(func() { f.v.Close() })
	f.m = apikey.NewManager(f.st, apikey.ManagerOptions{Prefix: "fav_live", Verifier: f.v, Now: f.clock.Now, Audit: f.rec.audit})
	f.h = secretscan.New(secretscan.Options{
		Responder: apikey.NewLeakResponder(f.m, apikey.LeakOptions{Notices: f.st, Notify: f.rec.notify, Audit: f.rec.audit}),
		KeysURL:   f.ks.srv.URL + "/meta/public_keys/secret_scanning",
		Now:       f.clock.Now,
	})
	f.srv = httptest.NewServer(f.h)
	t.Cleanup(f.srv.Close)
	f.user, _, _ = f.st.CreateUser(context.Background(), "ada@example.com", f.clock.Now())
	return f
}

func (f *fixture) issue(t *testing.T) (apikey.Key, string) {
	t.Helper()
	k, tok, err := f.m.Issue(context.Background(), f.user, apikey.IssueOptions{Name: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	return k, tok.Reveal()
}

// post sends body with the given headers (keyID "" and sig "" are left
// out) and returns the status and body.
func (f *fixture) post(t *testing.T, body []byte, keyID, sig string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/github/secret-scanning", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if keyID != "" {
		req.Header.Set(secretscan.HeaderKeyID, keyID)
	}
	if sig != "" {
		req.Header.Set(secretscan.HeaderSignature, sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

func reportBody(tokens ...string) []byte {
	var reps []secretscan.Report
	for _, tok := range tokens {
		reps = append(reps, secretscan.Report{Token: tok, Type: "fav_live_api_key",
			URL: "https://github.com/octocat/app/blob/abc123/.env", Source: "content"})
	}
	b, _ := json.Marshal(reps)
	return b
}

func feedback(t *testing.T, b []byte) []secretscan.Feedback {
	t.Helper()
	var fb []secretscan.Feedback
	if err := json.Unmarshal(b, &fb); err != nil {
		t.Fatalf("feedback %s: %v", b, err)
	}
	return fb
}

// A signed report of a live key revokes it at once, tells the owner where
// it was found, audits it, and answers GitHub's feedback format.
func TestLeakedKeyIsRevoked(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	k, token := f.issue(t)
	other, otherToken := f.issue(t)
	if _, err := f.v.Verify(ctx, token); err != nil { // cached, as on a busy server
		t.Fatal(err)
	}
	forged, _ := apikey.Generate("fav_live")
	body := reportBody(token, forged.Reveal(), "ghp_notours")

	status, resp := f.post(t, body, f.gh.id, f.gh.sign(t, body))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, resp)
	}
	want := []secretscan.Feedback{
		{TokenRaw: token, TokenType: "fav_live_api_key", Label: secretscan.TruePositive},
		{TokenRaw: forged.Reveal(), TokenType: "fav_live_api_key", Label: secretscan.FalsePositive},
		{TokenRaw: "ghp_notours", TokenType: "fav_live_api_key", Label: secretscan.FalsePositive},
	}
	if got := feedback(t, resp); !slices.Equal(got, want) {
		t.Errorf("feedback:\n got  %+v\n want %+v", got, want)
	}
	if _, err := f.v.Verify(ctx, token); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("Verify of the leaked key = %v, want ErrRevoked", err)
	}
	if _, err := f.v.Verify(ctx, otherToken); err != nil {
		t.Errorf("Verify of another key = %v", err)
	}
	notices, events := f.rec.snapshot()
	if len(notices) != 1 || notices[0].Kind != apikey.NoticeLeaked || notices[0].KeyID != k.ID ||
		notices[0].URL != "https://github.com/octocat/app/blob/abc123/.env" || notices[0].Key.UserID != f.user {
		t.Errorf("notices %+v, want one leak notice with the url", notices)
	}
	var kinds []string
	for _, e := range events {
		if e.KeyID == other.ID {
			continue
		}
		kinds = append(kinds, e.Kind)
		if e.Kind != apikey.EventIssued && (e.Actor != apikey.ActorGitHub || e.Detail["url"] == "") {
			t.Errorf("event %+v: want actor github and the url", e)
		}
		for _, v := range e.Detail {
			if strings.Contains(v, token[len(token)-20:]) {
				t.Errorf("event %+v holds the secret", e)
			}
		}
	}
	if want := []string{apikey.EventIssued, apikey.EventRevoked, apikey.EventLeaked}; !slices.Equal(kinds, want) {
		t.Errorf("events %v, want %v", kinds, want)
	}
	if s := f.h.Stats(); s.Reports != 3 || s.TruePositives != 1 || s.Revoked != 1 || s.Refused != 0 {
		t.Errorf("Stats = %+v", s)
	}
}

// GitHub delivers again when it gets no answer: a redelivered report is
// still a true positive, and nobody is mailed twice.
func TestRedeliveryIsIdempotent(t *testing.T) {
	f := newFixture(t)
	_, token := f.issue(t)
	body := reportBody(token)
	for i := range 3 {
		status, resp := f.post(t, body, f.gh.id, f.gh.sign(t, body))
		if status != http.StatusOK || feedback(t, resp)[0].Label != secretscan.TruePositive {
			t.Fatalf("delivery %d: %d %s", i, status, resp)
		}
	}
	notices, events := f.rec.snapshot()
	if len(notices) != 1 {
		t.Errorf("%d notices, want 1", len(notices))
	}
	if len(events) != 3 { // issued, revoked, leaked
		t.Errorf("events %+v, want issued, revoked and leaked once", events)
	}
}

// A mailer failure answers 503 so that GitHub delivers again; the key is
// revoked meanwhile, and the redelivery mails the owner.
func TestNotifyFailureIsRetriedByRedelivery(t *testing.T) {
	f := newFixture(t)
	_, token := f.issue(t)
	body := reportBody(token)
	f.rec.mu.Lock()
	f.rec.fail = errors.New("smtp: connection refused")
	f.rec.mu.Unlock()
	if status, resp := f.post(t, body, f.gh.id, f.gh.sign(t, body)); status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", status, resp)
	}
	if _, err := f.v.Verify(context.Background(), token); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("Verify = %v, want ErrRevoked although the mail failed", err)
	}
	f.rec.mu.Lock()
	f.rec.fail = nil
	f.rec.mu.Unlock()
	if status, resp := f.post(t, body, f.gh.id, f.gh.sign(t, body)); status != http.StatusOK {
		t.Fatalf("redelivery: status %d: %s", status, resp)
	}
	if notices, _ := f.rec.snapshot(); len(notices) != 1 {
		t.Errorf("%d notices after the redelivery, want 1", len(notices))
	}
}

// Requests that are not signed by one of GitHub's keys are refused with
// 4xx before the body is looked at: no key is revoked, nobody mailed.
func TestRefusedRequestsHaveNoEffect(t *testing.T) {
	f := newFixture(t)
	_, token := f.issue(t)
	body := reportBody(token)
	other := reportBody(token, "x")
	impostor := newSigner(t, f.gh.id)
	good := f.gh.sign(t, body)
	sigBytes, _ := base64.StdEncoding.DecodeString(good)
	flipped := slices.Clone(sigBytes)
	flipped[len(flipped)-1] ^= 1

	for _, tt := range []struct {
		name       string
		body       []byte
		keyID, sig string
		status     int
	}{
		{"unsigned", body, "", "", 401},
		{"no key id", body, "", good, 401},
		{"no signature", body, f.gh.id, "", 401},
		{"wrong key id", body, "not-a-github-key", good, 401},
		{"signed by the other published key", body, "old-key", good, 401},
		{"signed by an impostor under GitHub's key id", body, f.gh.id, impostor.sign(t, body), 401},
		{"flipped signature bit", body, f.gh.id, base64.StdEncoding.EncodeToString(flipped), 401},
		{"replayed signature on another body", other, f.gh.id, good, 401},
		{"signature not base64", body, f.gh.id, "!!!" + good, 401},
		{"signature not ASN.1", body, f.gh.id, base64.StdEncoding.EncodeToString([]byte("not a signature at all")), 401},
		{"signature too long", body, f.gh.id, strings.Repeat("A", 400), 401},
		{"too large", bytes.Repeat([]byte(" "), secretscan.DefaultMaxBodyBytes+1), f.gh.id, good, 413},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, resp := f.post(t, tt.body, tt.keyID, tt.sig)
			if status != tt.status {
				t.Errorf("status %d, want %d: %s", status, tt.status, resp)
			}
			if !strings.Contains(string(resp), `"status":`) {
				t.Errorf("body %s is not a problem document", resp)
			}
		})
	}
	if _, err := f.v.Verify(context.Background(), token); err != nil {
		t.Errorf("the key no longer verifies after refused requests: %v", err)
	}
	if notices, events := f.rec.snapshot(); len(notices) != 0 || len(events) != 1 {
		t.Errorf("refused requests had effects: notices %v, events %v", notices, events)
	}

	t.Run("GET", func(t *testing.T) {
		resp, err := http.Get(f.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
			t.Errorf("GET: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
	t.Run("signed but not an array", func(t *testing.T) {
		for _, b := range []string{`{"token":"x"}`, `[1]`, `[{"token":`, `null`} {
			if status, _ := f.post(t, []byte(b), f.gh.id, f.gh.sign(t, []byte(b))); status != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400", b, status)
			}
		}
	})
}

// GitHub rotates its keys: a request signed with a key id the cache does
// not know makes the handler fetch the keys again, once; a flood of
// made-up key ids causes at most one fetch per MinRefreshInterval.
func TestUnknownKeyIDRefreshes(t *testing.T) {
	f := newFixture(t)
	_, token := f.issue(t)
	body := reportBody(token)
	if status, _ := f.post(t, []byte(`[]`), f.gh.id, f.gh.sign(t, []byte(`[]`))); status != http.StatusOK {
		t.Fatalf("first request: %d", status)
	}
	if n := f.ks.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches after the first request, want 1", n)
	}

	f.clock.Advance(2 * time.Minute)
	rotated := newSigner(t, "new-key")
	f.ks.set(false, f.gh, rotated)
	if status, resp := f.post(t, body, rotated.id, rotated.sign(t, body)); status != http.StatusOK {
		t.Fatalf("request with the rotated key: %d %s", status, resp)
	}
	if n := f.ks.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after the rotation, want 2", n)
	}

	for i := range 50 {
		id := fmt.Sprintf("made-up-%d", i)
		if status, _ := f.post(t, body, id, rotated.sign(t, body)); status != http.StatusUnauthorized {
			t.Fatalf("made-up key id: status %d, want 401", status)
		}
	}
	if n := f.ks.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after a flood of made-up key ids within a minute, want still 2", n)
	}
	f.clock.Advance(2 * time.Minute)
	f.post(t, body, "made-up-again", rotated.sign(t, body))
	if n := f.ks.fetches.Load(); n != 3 {
		t.Errorf("%d fetches a refresh interval later, want 3", n)
	}
}

// While GitHub's keys cannot be fetched at all, requests are answered 503
// (GitHub retries), not accepted; known keys keep working when a later
// refresh fails.
func TestKeyServerDown(t *testing.T) {
	f := newFixture(t)
	f.ks.set(true)
	body := []byte(`[]`)
	if status, _ := f.post(t, body, f.gh.id, f.gh.sign(t, body)); status != http.StatusServiceUnavailable {
		t.Errorf("status %d with the key server down, want 503", status)
	}
	f.ks.set(false, f.gh)
	f.clock.Advance(2 * time.Minute)
	if status, _ := f.post(t, body, f.gh.id, f.gh.sign(t, body)); status != http.StatusOK {
		t.Errorf("status %d once the key server is back, want 200", status)
	}
	f.ks.set(true)
	f.clock.Advance(25 * time.Hour) // keys stale, refresh fails: the cached key stays
	if status, _ := f.post(t, body, f.gh.id, f.gh.sign(t, body)); status != http.StatusOK {
		t.Errorf("status %d with stale keys and the key server down, want 200", status)
	}
}

func TestTokenPattern(t *testing.T) {
	f := newFixture(t)
	for _, prefix := range []string{"fav_live", "fav_test"} {
		re := regexp.MustCompile(`\b` + secretscan.TokenPattern(prefix) + `\b`)
		k, tok, err := f.m.Issue(context.Background(), f.user, apikey.IssueOptions{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		text := "API_KEY=" + tok.Reveal() + "\n"
		if got := re.FindString(text); got != tok.Reveal() {
			t.Errorf("%s: pattern %s found %q in %q", prefix, re, got, k.ID)
		}
		if re.MatchString(strings.Replace(tok.Reveal(), prefix, "fav_other", 1)) {
			t.Errorf("%s: pattern matches another prefix", prefix)
		}
	}
	if got := secretscan.TokenPattern("fav_live"); got != "fav_live_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}" {
		t.Errorf("TokenPattern = %s", got)
	}
}
