// Package hotpath measures one API request through every middleware of a
// metered, planned API — the key middleware (cache hit), the usage meter,
// the plan middleware (two limits and a quota, in memory) and a
// middleware that reports the plan's cost to the meter — in the order
// the FavoritesAPI example wires them, around a trivial handler.
//
//	go test -run '^$' -bench . -benchmem ./bench/hotpath
package hotpath_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/store/sqlite"
	"github.com/apikit/apikit/usage"
)

// loadPlan is bench/load's: two limits and a quota, out of reach.
var loadPlan = &plan.Plan{
	Name:   "load",
	Limits: []ratelimit.Limit{ratelimit.MustParseLimit("1000000/s"), ratelimit.MustParseLimit("1000000000/h")},
	Quota:  plan.Quota{Count: plan.MaxQuota, Period: plan.Month},
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ok":true}`+"\n")
})

// stack is the example's order: apikey → meter → plan → reportCost →
// handler, over a SQLite store with one key.
type stack struct {
	h     http.Handler
	token string
}

func newStack(tb testing.TB, layers string) *stack {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "hotpath.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	uid, _, err := st.CreateUser(ctx, "hot@example.com", time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	_, tok, err := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "hot"}).Issue(ctx, uid, apikey.IssueOptions{Name: "hot"})
	if err != nil {
		tb.Fatal(err)
	}
	v := apikey.NewVerifier(st, apikey.VerifierOptions{})
	tb.Cleanup(func() { v.Close() })

	h := http.Handler(okHandler)
	if layers == "all" || layers == "plan" {
		// reportCost: the meter records what the plan spent.
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d, ok := plan.DecisionFrom(r.Context()); ok {
				usage.SetCost(r.Context(), int64(d.Cost))
			}
			inner.ServeHTTP(w, r)
		})
		h = plan.Middleware(plan.NewMemory(plan.MemoryOptions{}), plan.MiddlewareOptions{
			Request: func(r *http.Request) (plan.Request, error) {
				p, _ := apikey.PrincipalFrom(r.Context())
				return plan.Request{Plan: loadPlan, User: strconv.FormatInt(p.UserID, 10), Key: p.KeyID}, nil
			},
		})(h)
	}
	if layers == "all" || layers == "meter" {
		meter := usage.NewMeter(st, usage.Options{FlushInterval: 10 * time.Second})
		tb.Cleanup(func() { meter.Close(context.Background()) })
		h = meter.Middleware(usage.MiddlewareOptions{
			Identity: func(r *http.Request) (string, string, bool) {
				p, ok := apikey.PrincipalFrom(r.Context())
				return p.KeyID, strconv.FormatInt(p.UserID, 10), ok
			},
		})(h)
	}
	if layers != "bare" {
		h = apikey.Middleware(v, apikey.MiddlewareOptions{})(h)
	}
	return &stack{h: h, token: tok.Reveal()}
}

// writer is a ResponseWriter reused from request to request, so that
// what is counted is the middleware's, not the recorder's. Like
// net/http's, it writes strings without copying them.
type writer struct {
	h      http.Header
	status int
}

func (w *writer) Header() http.Header         { return w.h }
func (w *writer) WriteHeader(code int)        { w.status = code }
func (w *writer) Write(b []byte) (int, error) { return len(b), nil }

func (w *writer) WriteString(s string) (int, error) { return len(s), nil }

// BenchmarkHotPath runs a cache-hit request through the layers: "all" is
// the example's whole stack; "bare" the handler alone; "auth" the key
// middleware alone; "meter" and "plan" the key middleware with one of the
// two.
func BenchmarkHotPath(b *testing.B) {
	for _, layers := range []string{"bare", "auth", "meter", "plan", "all"} {
		b.Run(layers, func(b *testing.B) {
			s := newStack(b, layers)
			r := httptest.NewRequest(http.MethodGet, "/v1/me", nil)
			r.Header.Set("Authorization", "Bearer "+s.token)
			w := &writer{h: http.Header{}}
			s.h.ServeHTTP(w, r) // the key is in the cache from here on
			if w.status != 0 && w.status != http.StatusOK {
				b.Fatalf("status %d", w.status)
			}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				s.h.ServeHTTP(w, r)
			}
		})
	}
}

// TestHotPathAllocs keeps the whole stack's allocations per request in
// check: issue 17 asks for at most 12 for a cache-hit API request
// through every middleware.
func TestHotPathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("opens a SQLite store")
	}
	s := newStack(t, "all")
	r := httptest.NewRequest(http.MethodGet, "/v1/me", nil)
	r.Header.Set("Authorization", "Bearer "+s.token)
	w := &writer{h: http.Header{}}
	s.h.ServeHTTP(w, r)
	n := testing.AllocsPerRun(200, func() {
		clear(w.h)
		s.h.ServeHTTP(w, r)
	})
	t.Logf("%.0f allocations per request", n)
	if w.status != 0 && w.status != http.StatusOK {
		t.Fatalf("status %d", w.status)
	}
	if n > 12 {
		t.Errorf("%.0f allocations per request through every middleware; want at most 12", n)
	}
}
