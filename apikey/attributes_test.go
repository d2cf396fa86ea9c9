package apikey_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
	"github.com/apikit/apikit/internal/testkit/fakeclock"
	"github.com/apikit/apikit/ratelimit"
)

// memFixture is a MemoryStore (which keeps attributes) with a Verifier and
// a linked Manager issuing fav_live keys.
type memFixture struct {
	st    *apikeytest.MemoryStore
	clock *fakeclock.Clock
	v     *apikey.Verifier
	m     *apikey.Manager
	user  int64
}

func newMemFixture(t testing.TB, mo apikey.ManagerOptions) *memFixture {
	t.Helper()
	f := &memFixture{st: apikeytest.NewMemoryStore(), clock: fakeclock.New(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))}
	f.v = apikey.NewVerifier(f.st, apikey.VerifierOptions{Now: f.clock.Now})
	t.Cleanup(func() { f.v.Close() })
	mo.Prefix, mo.Verifier, mo.Now = "fav_live", f.v, f.clock.Now
	f.m = apikey.NewManager(f.st, mo)
	f.user, _, _ = f.st.CreateUser(context.Background(), "ada@example.com", f.clock.Now())
	return f
}

func TestIssueAttributes(t *testing.T) {
	ctx := context.Background()
	f := newMemFixture(t, apikey.ManagerOptions{})
	k, tok, err := f.m.Issue(ctx, f.user, apikey.IssueOptions{
		Name:         "ci",
		Metadata:     json.RawMessage(`{ "customer": "acme",  "tier": "gold" }`),
		Tags:         []string{"team:billing", "ci", "ci"},
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.9/24"), netip.MustParsePrefix("::ffff:198.51.100.0/120")},
		Environment:  apikey.EnvTest,
	})
	if err != nil {
		t.Fatal(err)
	}
	if k.Prefix != "fav_test" || tok.Prefix != "fav_test" || k.Environment() != apikey.EnvTest {
		t.Errorf("prefix %q, token prefix %q, environment %q; want fav_test, test", k.Prefix, tok.Prefix, k.Environment())
	}
	if got := string(k.Metadata); got != `{"customer":"acme","tier":"gold"}` {
		t.Errorf("Metadata = %s, want it compacted", got)
	}
	if !slices.Equal(k.Tags, []string{"team:billing", "ci"}) {
		t.Errorf("Tags = %q, want duplicates dropped", k.Tags)
	}
	wantCIDRs := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("198.51.100.0/24")}
	if !slices.Equal(k.AllowedCIDRs, wantCIDRs) {
		t.Errorf("AllowedCIDRs = %v, want masked and unmapped %v", k.AllowedCIDRs, wantCIDRs)
	}

	p, err := f.v.Verify(apikey.WithClientAddr(ctx, netip.MustParseAddr("203.0.113.200")), tok.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	if p.Environment != apikey.EnvTest || string(p.Metadata) != string(k.Metadata) ||
		!slices.Equal(p.Tags, k.Tags) || !slices.Equal(p.AllowedCIDRs, wantCIDRs) {
		t.Errorf("Principal = %+v, want the key's attributes", p)
	}
}

func TestIssueRefusesBadAttributes(t *testing.T) {
	f := newMemFixture(t, apikey.ManagerOptions{})
	long := `{"a":"` + strings.Repeat("x", apikey.MaxMetadataLen) + `"}`
	for _, tt := range []struct {
		name string
		opts apikey.IssueOptions
	}{
		{"metadata array", apikey.IssueOptions{Metadata: json.RawMessage(`[1,2]`)}},
		{"metadata string", apikey.IssueOptions{Metadata: json.RawMessage(`"x"`)}},
		{"metadata invalid", apikey.IssueOptions{Metadata: json.RawMessage(`{"a":`)}},
		{"metadata trailing", apikey.IssueOptions{Metadata: json.RawMessage(`{} {}`)}},
		{"metadata too large", apikey.IssueOptions{Metadata: json.RawMessage(long)}},
		{"tag empty", apikey.IssueOptions{Tags: []string{""}}},
		{"tag space", apikey.IssueOptions{Tags: []string{"a b"}}},
		{"tag leading dash", apikey.IssueOptions{Tags: []string{"-a"}}},
		{"tag unicode", apikey.IssueOptions{Tags: []string{"café"}}},
		{"tag too long", apikey.IssueOptions{Tags: []string{strings.Repeat("a", apikey.MaxTagLen+1)}}},
		{"too many tags", apikey.IssueOptions{Tags: slices.Repeat([]string{"a"}, apikey.MaxTags+1)}},
		{"cidr invalid", apikey.IssueOptions{AllowedCIDRs: []netip.Prefix{{}}}},
		{"cidr everything", apikey.IssueOptions{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}},
		{"too many cidrs", apikey.IssueOptions{AllowedCIDRs: slices.Repeat([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, apikey.MaxCIDRs+1)}},
		{"environment", apikey.IssueOptions{Environment: "staging"}},
		{"expiry in the past", apikey.IssueOptions{ExpiresAt: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := f.m.Issue(context.Background(), f.user, tt.opts); !errors.Is(err, apikey.ErrInvalidOptions) {
				t.Errorf("Issue = %v, want ErrInvalidOptions", err)
			}
		})
	}
	if keys, _ := f.m.List(context.Background(), f.user); len(keys) != 0 {
		t.Errorf("%d keys stored by refused issues", len(keys))
	}
}

func TestIssueExpiresIn(t *testing.T) {
	f := newMemFixture(t, apikey.ManagerOptions{})
	k, _, err := f.m.Issue(context.Background(), f.user, apikey.IssueOptions{ExpiresIn: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if want := f.clock.Now().Add(30 * 24 * time.Hour); !k.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want %v", k.ExpiresAt, want)
	}
}

// plainStore is a Store that does not promise to keep attributes: the
// embedded interface hides the memory store's AttributeStore methods.
type plainStore struct{ apikey.Store }

// A store that does not promise to keep attributes refuses keys that carry
// them, rather than dropping a network restriction silently; plain keys
// still work.
func TestIssueAttributesNeedAnAttributeStore(t *testing.T) {
	mem := apikeytest.NewMemoryStore()
	st := plainStore{mem}
	if _, ok := apikey.Store(st).(apikey.AttributeStore); ok {
		t.Fatal("plainStore must not be an AttributeStore")
	}
	m := apikey.NewManager(st, apikey.ManagerOptions{})
	user, _, err := mem.CreateUser(context.Background(), "ada@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []apikey.IssueOptions{
		{Tags: []string{"ci"}},
		{Metadata: json.RawMessage(`{"a":1}`)},
		{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
	} {
		if _, _, err := m.Issue(context.Background(), user, opts); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("Issue(%+v) = %v, want ErrUnsupported", opts, err)
		}
	}
	if _, _, err := m.Issue(context.Background(), user, apikey.IssueOptions{Environment: apikey.EnvLive}); err != nil {
		t.Errorf("Issue of a plain key = %v", err)
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := apikey.ParseCIDRs(" 203.0.113.7/24, 2001:db8::1\n198.51.100.7 ")
	want := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::1/128"), netip.MustParsePrefix("198.51.100.7/32")}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ParseCIDRs = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "0.0.0.0/0", "::/0"} {
		if _, err := apikey.ParseCIDRs(bad); !errors.Is(err, apikey.ErrInvalidOptions) {
			t.Errorf("ParseCIDRs(%q) = %v, want ErrInvalidOptions", bad, err)
		}
	}
	if got, err := apikey.ParseCIDRs(" "); err != nil || got != nil {
		t.Errorf("ParseCIDRs(blank) = %v, %v; want nil", got, err)
	}
}

// A key restricted to networks is served to requests from them and refused
// with 403 and a problem of its own type from elsewhere; behind a trusted
// proxy the client is read from X-Forwarded-For, and only from the proxy.
func TestMiddlewareAllowedCIDRs(t *testing.T) {
	ctx := context.Background()
	f := newMemFixture(t, apikey.ManagerOptions{})
	_, restricted, err := f.m.Issue(ctx, f.user, apikey.IssueOptions{
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:1::/48")}})
	if err != nil {
		t.Fatal(err)
	}
	_, open, err := f.m.Issue(ctx, f.user, apikey.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	direct := apikey.Middleware(f.v, apikey.MiddlewareOptions{})(ok)
	trusted, err := ratelimit.ParseTrustedProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	key := ratelimit.ClientKey(ratelimit.IPKeyOptions{TrustedProxies: trusted, IPv6Bits: 128})
	proxied := apikey.Middleware(f.v, apikey.MiddlewareOptions{
		ClientIP: func(r *http.Request) netip.Addr { a, _ := netip.ParseAddr(key(r)); return a },
	})(ok)

	for _, tt := range []struct {
		name   string
		h      http.Handler
		token  string
		remote string
		xff    string
		want   int
	}{
		{"inside", direct, restricted.Reveal(), "203.0.113.7:5000", "", 204},
		{"inside ipv6", direct, restricted.Reveal(), "[2001:db8:1:2::9]:5000", "", 204},
		{"inside mapped", direct, restricted.Reveal(), "[::ffff:203.0.113.7]:5000", "", 204},
		{"outside", direct, restricted.Reveal(), "198.51.100.1:5000", "", 403},
		{"forged header, no trusted proxy", direct, restricted.Reveal(), "198.51.100.1:5000", "203.0.113.7", 403},
		{"unix socket", direct, restricted.Reveal(), "@", "", 403},
		{"unrestricted key from anywhere", direct, open.Reveal(), "198.51.100.1:5000", "", 204},
		{"via trusted proxy, client inside", proxied, restricted.Reveal(), "10.1.2.3:5000", "203.0.113.7", 204},
		{"via trusted proxy, client outside", proxied, restricted.Reveal(), "10.1.2.3:5000", "198.51.100.1", 403},
		{"via trusted proxy, forged left entry", proxied, restricted.Reveal(), "10.1.2.3:5000", "203.0.113.7, 198.51.100.1", 403},
		{"header from an untrusted peer", proxied, restricted.Reveal(), "198.51.100.1:5000", "203.0.113.7", 403},
		{"the proxy itself", proxied, restricted.Reveal(), "10.1.2.3:5000", "", 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/me", nil)
			r.RemoteAddr = tt.remote
			r.Header.Set("Authorization", "Bearer "+tt.token)
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			w := httptest.NewRecorder()
			tt.h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			if tt.want == 403 {
				var p struct{ Type, Code string }
				if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Type != apikey.AddressNotAllowedType || p.Code != "address_not_allowed" {
					t.Errorf("problem %s (%v), want type %s", w.Body, err, apikey.AddressNotAllowedType)
				}
				if w.Header().Get("WWW-Authenticate") != "" {
					t.Error("a 403 for the address carries a WWW-Authenticate challenge")
				}
			}
		})
	}
	if n := f.v.Stats().AddressRefused; n == 0 {
		t.Error("Stats().AddressRefused = 0")
	}
}

// Verify, which is not told the client's address, refuses a key restricted
// to networks: it fails closed.
func TestVerifyWithoutAddressFailsClosed(t *testing.T) {
	ctx := context.Background()
	f := newMemFixture(t, apikey.ManagerOptions{})
	_, tok, err := f.m.Issue(ctx, f.user, apikey.IssueOptions{AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(ctx, tok.Reveal()); !errors.Is(err, apikey.ErrAddressNotAllowed) {
		t.Errorf("Verify without an address = %v, want ErrAddressNotAllowed", err)
	}
	if _, err := f.v.Verify(apikey.WithClientAddr(ctx, netip.MustParseAddr("203.0.113.1")), tok.Reveal()); err != nil {
		t.Errorf("Verify from inside = %v", err)
	}
	if got := apikey.StatusCode(apikey.ErrAddressNotAllowed); got != http.StatusForbidden {
		t.Errorf("StatusCode = %d, want 403", got)
	}
}
