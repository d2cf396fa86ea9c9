package apikey_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
)

// budgetLimiter grants each client key a fixed number of units, and counts
// the calls it gets.
type budgetLimiter struct {
	mu     sync.Mutex
	budget int
	spent  map[string]int
	calls  atomic.Int64
}

func newBudgetLimiter(budget int) *budgetLimiter {
	return &budgetLimiter{budget: budget, spent: map[string]int{}}
}

func (l *budgetLimiter) Allow(ctx context.Context, key string) (bool, error) {
	l.calls.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spent[key] >= l.budget {
		return false, nil
	}
	l.spent[key]++
	return true, nil
}

func requestFrom(addr, token string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = addr
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

func forged(t testing.TB) string {
	t.Helper()
	tok, err := apikey.Generate("fav_test") // well formed, valid checksum, unknown id
	if err != nil {
		t.Fatal(err)
	}
	return tok.Reveal()
}

// A flood of forged, well-formed keys from one client reaches the store at
// most budget times, even all at once; then that client gets 429 with
// Retry-After before any store query. Keys already verified keep working
// from that same address (other clients behind its proxy), other clients
// keep their own budget, and cached keys never spend any.
func TestLookupLimiter(t *testing.T) {
	const budget = 5
	f := newFixture(t, apikey.VerifierOptions{})
	_, good := f.issue(t, apikey.IssueOptions{})
	_, cold := f.issue(t, apikey.IssueOptions{})
	lim := newBudgetLimiter(budget)
	mw := apikey.Middleware(f.v, apikey.MiddlewareOptions{LookupLimiter: lim, LookupRetryAfter: 90 * time.Second})

	// The good key is verified once, from elsewhere, and is now cached.
	if rec, _ := serve(t, mw, requestFrom("198.51.100.7:4000", good)); rec.Code != 204 {
		t.Fatalf("good key: status %d", rec.Code)
	}
	before, callsBefore := f.fs.lookups.Load(), lim.calls.Load()

	const flood = 60
	var wg sync.WaitGroup
	codes := make([]int, flood)
	retry := make([]string, flood)
	for i := range flood {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			mw(http.NotFoundHandler()).ServeHTTP(rec, requestFrom("192.0.2.1:1234", forged(t)))
			codes[i], retry[i] = rec.Code, rec.Header().Get("Retry-After")
		})
	}
	wg.Wait()
	if n := f.fs.lookups.Load() - before; n > budget {
		t.Errorf("%d forged keys from one client made %d store lookups, want at most %d", flood, n, budget)
	}
	var unauthorized, throttled int
	for i, c := range codes {
		switch c {
		case 401:
			unauthorized++
		case 429:
			throttled++
			if retry[i] != "90" {
				t.Errorf("429 with Retry-After %q, want 90", retry[i])
			}
		default:
			t.Errorf("forged key: status %d", c)
		}
	}
	if unauthorized != budget || throttled != flood-budget {
		t.Errorf("%d refused with 401 and %d with 429, want %d and %d", unauthorized, throttled, budget, flood-budget)
	}
	rec, _ := serve(t, mw, requestFrom("192.0.2.1:1234", forged(t)))
	checkProblem(t, rec, 429, "rate_limited")

	// A cached key is served from the exhausted address, without asking
	// the limiter.
	calls := lim.calls.Load()
	for range 20 {
		if rec, _ := serve(t, mw, requestFrom("192.0.2.1:5678", good)); rec.Code != 204 {
			t.Fatalf("cached good key from the exhausted address: status %d", rec.Code)
		}
	}
	if n := lim.calls.Load() - calls; n != 0 {
		t.Errorf("cached keys asked the limiter %d times, want 0", n)
	}
	// A key not yet cached needs a lookup: refused from there, served
	// from another client.
	if rec, _ := serve(t, mw, requestFrom("192.0.2.1:1234", cold)); rec.Code != 429 {
		t.Errorf("uncached key from the exhausted client: status %d, want 429", rec.Code)
	}
	if rec, _ := serve(t, mw, requestFrom("203.0.113.5:999", cold)); rec.Code != 204 {
		t.Errorf("uncached key from another client: status %d, want 204", rec.Code)
	}
	if rec, _ := serve(t, mw, requestFrom("203.0.113.5:999", forged(t))); rec.Code != 401 {
		t.Errorf("forged key from another client: status %d, want 401 (its own budget)", rec.Code)
	}
	if lim.calls.Load()-callsBefore == 0 {
		t.Error("the limiter was never asked")
	}
}

// ClientKey decides who pays; a limiter error refuses without a lookup and
// is logged.
func TestLookupLimiterClientKeyAndFailure(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{})
	var keys []string
	lim := apikey.LimiterFunc(func(ctx context.Context, key string) (bool, error) {
		keys = append(keys, key)
		return true, nil
	})
	mw := apikey.Middleware(f.v, apikey.MiddlewareOptions{LookupLimiter: lim, ClientKey: func(r *http.Request) string {
		return r.Header.Get("X-Client") // in an application: only from trusted proxies
	}})
	r := requestFrom("10.0.0.1:1", forged(t))
	r.Header.Set("X-Client", "tenant-7")
	serve(t, mw, r)
	serve(t, mw, requestFrom("[2001:db8::1]:443", forged(t)))
	if len(keys) != 2 || keys[0] != "tenant-7" || keys[1] != "" {
		t.Errorf("limiter keys %q", keys)
	}
	dflt := apikey.Middleware(f.v, apikey.MiddlewareOptions{LookupLimiter: apikey.LimiterFunc(func(ctx context.Context, key string) (bool, error) {
		keys = append(keys, key)
		return true, nil
	})})
	serve(t, dflt, requestFrom("[2001:db8::1]:443", forged(t)))
	if keys[len(keys)-1] != "2001:db8::1" {
		t.Errorf("default client key %q, want the host of RemoteAddr", keys[len(keys)-1])
	}

	var logs bytes.Buffer
	failing := apikey.Middleware(f.v, apikey.MiddlewareOptions{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		LookupLimiter: apikey.LimiterFunc(func(ctx context.Context, key string) (bool, error) {
			return true, errors.New("redis: connection refused")
		}),
	})
	before := f.fs.lookups.Load()
	rec, _ := serve(t, failing, requestFrom("10.0.0.1:1", forged(t)))
	checkProblem(t, rec, 429, "rate_limited")
	if rec.Header().Get("Retry-After") != "60" {
		t.Errorf("Retry-After %q, want 60", rec.Header().Get("Retry-After"))
	}
	if f.fs.lookups.Load() != before {
		t.Error("a limiter failure let the lookup through")
	}
	if !strings.Contains(logs.String(), "lookup limiter failed") || strings.Contains(rec.Body.String(), "redis") {
		t.Errorf("log %q, body %s", logs.String(), rec.Body)
	}
}

// A refused revoked key is logged with its id, at info level, and never
// with its secret.
func TestRevokedKeyIsLogged(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{})
	k, token := f.issue(t, apikey.IssueOptions{})
	if err := f.m.Revoke(context.Background(), k.ID); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	mw := apikey.Middleware(f.v, apikey.MiddlewareOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	rec, _ := serve(t, mw, requestFrom("10.0.0.1:1", token))
	checkProblem(t, rec, 401, "invalid_token")
	out := logs.String()
	if !strings.Contains(out, "level=INFO") || !strings.Contains(out, "revoked key refused") || !strings.Contains(out, "key_id="+k.ID) {
		t.Errorf("log %q does not name the revoked key", out)
	}
	if strings.Contains(out, token[len(token)-apikey.SecretLen-apikey.CheckLen:len(token)-apikey.CheckLen]) {
		t.Error("the log contains the secret")
	}
}

// During a store outage every re-read of an expired cache entry fails, so
// a customer's key is looked up on every request: those re-reads of keys
// verified before spend no budget, so the customer gets 503s (the store is
// down), not 429s, and a forged key still does.
func TestLookupLimiterDuringOutage(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{CacheTTL: time.Second})
	_, good := f.issue(t, apikey.IssueOptions{})
	lim := newBudgetLimiter(1)
	mw := apikey.Middleware(f.v, apikey.MiddlewareOptions{LookupLimiter: lim})
	if rec, _ := serve(t, mw, requestFrom("192.0.2.1:1", good)); rec.Code != 204 {
		t.Fatalf("good key: status %d", rec.Code) // spends the one unit
	}
	f.clock.Advance(2 * time.Second) // the entry expires
	f.fs.down.Store(true)
	for range 5 {
		if rec, _ := serve(t, mw, requestFrom("192.0.2.1:1", good)); rec.Code != 503 {
			t.Fatalf("known key with the store down: status %d, want 503", rec.Code)
		}
	}
	f.fs.down.Store(false)
	if rec, _ := serve(t, mw, requestFrom("192.0.2.1:1", good)); rec.Code != 204 {
		t.Errorf("known key after the outage: status %d, want 204", rec.Code)
	}
	if rec, _ := serve(t, mw, requestFrom("192.0.2.1:1", forged(t))); rec.Code != 429 {
		t.Errorf("forged key from the client whose unit is spent: status %d, want 429", rec.Code)
	}
}
