package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/audit/audittest"
	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/internal/testkit/fakeclock"
	"github.com/apikit/apikit/magiclink"
)

var start = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func newLog(t *testing.T, opts audit.Options) (*audit.Log, *audittest.MemoryStore, *fakeclock.Clock) {
	t.Helper()
	st, clock := audittest.NewMemoryStore(), fakeclock.New(start)
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	return audit.New(st, opts), st, clock
}

// Every kind of security event is appended and read back for its user.
func TestEveryKind(t *testing.T) {
	l, _, _ := newLog(t, audit.Options{})
	ctx := context.Background()
	kinds := []audit.Kind{audit.KeyIssued, audit.KeyRolled, audit.KeyRevoked, audit.KeyDeactivated, audit.KeyActivated,
		audit.KeyExpired, audit.KeyLeaked, audit.SignInLinkRequested, audit.SignIn, audit.SignOut, audit.SignOutEverywhere,
		audit.SubscriptionChanged, audit.PlanChanged, audit.CheckoutCompleted, audit.PlanChangeRequested,
		audit.EmailChangeRequested, audit.EmailChanged, audit.AccountDeleted}
	for _, k := range kinds {
		if _, err := l.Append(ctx, audit.Event{Kind: k, UserID: 7}); err != nil {
			t.Fatalf("Append(%s): %v", k, err)
		}
	}
	events, next, err := l.List(ctx, 7, audit.Page{})
	if err != nil || next != 0 || len(events) != len(kinds) {
		t.Fatalf("List = %d events, next %d, %v", len(events), next, err)
	}
	for i, e := range events {
		if want := kinds[len(kinds)-1-i]; e.Kind != want {
			t.Errorf("event %d is %s, want %s (newest first)", i, e.Kind, want)
		}
		if e.Actor.Kind != audit.ActorSystem || !e.Time.Equal(start) {
			t.Errorf("event %+v: want actor system and the clock's time", e)
		}
	}
}

// The request's address (through trusted proxies only) and user agent,
// and the actor set after sign-in, reach the events appended while
// handling it.
func TestMiddlewareSource(t *testing.T) {
	l, _, _ := newLog(t, audit.Options{})
	trusted := netip.MustParsePrefix("10.0.0.0/8")
	clientIP := func(r *http.Request) netip.Addr {
		peer := audit.RequestSource(r, nil).IP
		if !trusted.Contains(peer) {
			return peer
		}
		xff := strings.Split(r.Header.Get("X-Forwarded-For"), ",")
		a, _ := netip.ParseAddr(strings.TrimSpace(xff[len(xff)-1]))
		return a
	}
	var got audit.Event
	h := audit.Middleware(clientIP)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := audit.WithActor(r.Context(), audit.Actor{Kind: audit.ActorUser, ID: "7"})
		var err error
		got, err = l.Append(ctx, audit.Event{Kind: audit.SignOutEverywhere, UserID: 7})
		if err != nil {
			t.Error(err)
		}
	}))
	for _, tt := range []struct{ remote, xff, want string }{
		{"10.1.1.1:443", "198.51.100.1, 203.0.113.5", "203.0.113.5"},
		{"198.51.100.9:443", "203.0.113.5", "198.51.100.9"},
		{"[::ffff:198.51.100.9]:443", "", "198.51.100.9"},
	} {
		r := httptest.NewRequest("POST", "/sign-out-everywhere", nil)
		r.RemoteAddr = tt.remote
		r.Header.Set("X-Forwarded-For", tt.xff)
		r.Header.Set("User-Agent", "Mozilla/5.0 (X11)\x00\n")
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got.IP.String() != tt.want || got.UserAgent != "Mozilla/5.0 (X11)  " || got.Actor != (audit.Actor{Kind: audit.ActorUser, ID: "7"}) {
			t.Errorf("from %s via %q: event %+v, want ip %s", tt.remote, tt.xff, got, tt.want)
		}
	}
}

// An event's own fields win over the context's.
func TestEventFieldsWin(t *testing.T) {
	l, _, _ := newLog(t, audit.Options{})
	ctx := audit.WithSource(context.Background(), audit.Source{Actor: audit.Actor{Kind: audit.ActorUser, ID: "7"}, IP: netip.MustParseAddr("203.0.113.5")})
	e, err := l.Append(ctx, audit.Event{Kind: audit.KeyLeaked, UserID: 7, Actor: audit.Actor{Kind: audit.ActorGitHub}})
	if err != nil || e.Actor.Kind != audit.ActorGitHub || e.IP.String() != "203.0.113.5" {
		t.Errorf("Append = %+v, %v", e, err)
	}
}

// Words that IsSecret recognises are redacted wherever they hide in
// details and the user agent; over-long values are cut.
func TestRedaction(t *testing.T) {
	token := "fav_live_4tQ2x9LmZpB7_Rk2hX8wVd0qL3mNpT7yBc5zGj1sFa9eU0Qp2Lm"
	l, _, _ := newLog(t, audit.Options{IsSecret: func(w string) bool { return strings.HasPrefix(w, "fav_live_") && len(w) > 40 }})
	e, err := l.Append(context.Background(), audit.Event{Kind: audit.KeyLeaked, UserID: 1,
		UserAgent: "curl " + token,
		Detail: map[string]string{
			"url":  "https://example.com/x?api_key=" + token + "&a=b",
			"note": strings.Repeat("é", audit.MaxDetailLen),
			// A token across the cut must not be stored in part.
			"cut": strings.Repeat("x", audit.MaxDetailLen-20) + " " + token,
		}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://example.com/x?api_key=[redacted]&a=b"; e.Detail["url"] != want {
		t.Errorf("url = %q, want %q", e.Detail["url"], want)
	}
	if c := e.Detail["cut"]; strings.Contains(c, token[:15]) || len(c) > audit.MaxDetailLen {
		t.Errorf("a token across the cut was stored in part: %q", c[len(c)-30:])
	}
	if e.UserAgent != "curl [redacted]" {
		t.Errorf("user agent = %q", e.UserAgent)
	}
	if n := e.Detail["note"]; len(n) > audit.MaxDetailLen || !strings.HasPrefix(n, "é") || strings.ContainsRune(n, '\uFFFD') {
		t.Errorf("note cut badly: %d bytes", len(n))
	}
	// The same through a request's Source.
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("User-Agent", strings.Repeat("x", audit.MaxUserAgentLen-20)+" "+token)
	e, err = l.Append(audit.WithSource(context.Background(), audit.RequestSource(r, nil)), audit.Event{Kind: audit.KeyLeaked, UserID: 1})
	if err != nil || strings.Contains(e.UserAgent, token[:15]) || len(e.UserAgent) > audit.MaxUserAgentLen {
		t.Errorf("a token across the cut of a request's user agent was stored in part: %v, %q", err, e.UserAgent)
	}
	var buf bytes.Buffer
	if err := l.Export(context.Background(), &buf, 0); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), token) {
		t.Error("the export holds the token")
	}
}

func TestAppendRefusesInvalidEvents(t *testing.T) {
	l, st, _ := newLog(t, audit.Options{})
	many := map[string]string{}
	for i := range audit.MaxDetails + 1 {
		many[string(rune('a'+i))] = "x"
	}
	for _, e := range []audit.Event{
		{},
		{Kind: "key issued"},
		{Kind: audit.Kind(strings.Repeat("k", 65))},
		{Kind: audit.SignIn, Actor: audit.Actor{Kind: "a b"}},
		{Kind: audit.SignIn, KeyID: "bad id"},
		{Kind: audit.SignIn, Detail: map[string]string{"Token": "x"}},
		{Kind: audit.SignIn, Detail: map[string]string{"": "x"}},
		{Kind: audit.SignIn, Detail: many},
	} {
		if _, err := l.Append(context.Background(), e); !errors.Is(err, audit.ErrInvalidEvent) {
			t.Errorf("Append(%+v) = %v, want ErrInvalidEvent", e, err)
		}
	}
	if evs, _ := st.AuditEvents(context.Background(), 0, 10); len(evs) != 0 {
		t.Errorf("%d refused events stored", len(evs))
	}
}

// A store failure is the caller's to see: appends are synchronous.
func TestAppendReportsStoreFailure(t *testing.T) {
	l, st, _ := newLog(t, audit.Options{})
	st.Fail(errors.New("database is locked"))
	if _, err := l.Append(context.Background(), audit.Event{Kind: audit.SignIn}); err == nil {
		t.Error("Append on a failing store returned nil")
	}
}

func TestListPages(t *testing.T) {
	l, _, _ := newLog(t, audit.Options{})
	ctx := context.Background()
	for range 120 {
		if _, err := l.Append(ctx, audit.Event{Kind: audit.SignIn, UserID: 1}); err != nil {
			t.Fatal(err)
		}
	}
	var seen int
	page := audit.Page{}
	var last int64
	for {
		events, next, err := l.List(ctx, 1, page)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			if last != 0 && e.ID >= last {
				t.Fatalf("event %d after %d: not newest first", e.ID, last)
			}
			last = e.ID
		}
		seen += len(events)
		if next == 0 {
			break
		}
		page.Before = next
	}
	if seen != 120 {
		t.Errorf("paged through %d events, want 120", seen)
	}
}

func TestExportJSONLines(t *testing.T) {
	l, _, _ := newLog(t, audit.Options{})
	ctx := context.Background()
	for i := range 1200 {
		if _, err := l.Append(ctx, audit.Event{Kind: audit.PlanChanged, UserID: int64(i%2 + 1), Actor: audit.Actor{Kind: audit.ActorStripe},
			Detail: map[string]string{"plan": "pro"}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		user int64
		want int
	}{{0, 1200}, {2, 600}} {
		var buf bytes.Buffer
		if err := l.Export(ctx, &buf, tt.user); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(&buf)
		n, prev := 0, int64(0)
		for sc.Scan() {
			var e audit.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("line %d: %v: %s", n, err, sc.Bytes())
			}
			if e.ID <= prev || (tt.user != 0 && e.UserID != tt.user) || e.Detail["plan"] != "pro" || e.Actor.Kind != audit.ActorStripe {
				t.Fatalf("line %d: %s", n, sc.Bytes())
			}
			prev = e.ID
			n++
		}
		if n != tt.want {
			t.Errorf("user %d: %d lines, want %d", tt.user, n, tt.want)
		}
	}
}

func TestPruneRetention(t *testing.T) {
	l, _, clock := newLog(t, audit.Options{Retention: 30 * 24 * time.Hour})
	ctx := context.Background()
	for range 3 {
		if _, err := l.Append(ctx, audit.Event{Kind: audit.SignIn, UserID: 1}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(20 * 24 * time.Hour)
	}
	// Events at day 0, 20 and 40; now is day 60: day 0 and 20 are older
	// than 30 days.
	n, err := l.Prune(ctx)
	if err != nil || n != 2 {
		t.Errorf("Prune = %d, %v; want 2", n, err)
	}
	if events, _, _ := l.List(ctx, 1, audit.Page{}); len(events) != 1 {
		t.Errorf("%d events left, want 1", len(events))
	}
}

// The kinds that package magiclink and billing report with no constant
// of their own in earlier versions have the same values here, so that an
// audit hook passes them on as they are.
func TestKindsMatchReporters(t *testing.T) {
	for k, want := range map[audit.Kind]string{
		audit.CheckoutCompleted:    billing.EventCheckoutCompleted,
		audit.PlanChangeRequested:  billing.EventPlanChangeRequested,
		audit.EmailChangeRequested: magiclink.EventEmailChangeRequested,
		audit.EmailChanged:         magiclink.EventEmailChanged,
		audit.SignOutEverywhere:    magiclink.EventSignedOutEverywhere,
		audit.PlanChanged:          billing.EventPlanChanged,
	} {
		if string(k) != want {
			t.Errorf("audit kind %q, reporter's %q", k, want)
		}
	}
}
