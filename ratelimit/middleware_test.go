package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/ratelimit"
)

// byHeader limits by the X-Key request header.
func byHeader(r *http.Request) (string, error) { return r.Header.Get("X-Key"), nil }

// server wraps a handler that counts its calls in mw.
type server struct {
	h     http.Handler
	calls int
}

func newServer(mw func(http.Handler) http.Handler) *server {
	s := new(server)
	s.h = mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls++
		w.Write([]byte("ok"))
	}))
	return s
}

func (s *server) get(key string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/api/favorites", nil)
	if key != "" {
		r.Header.Set("X-Key", key)
	}
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, r)
	return w
}

func TestMiddlewareHeaders(t *testing.T) {
	c := newClock()
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now})
	s := newServer(ratelimit.Middleware(m, ratelimit.MiddlewareOptions{
		KeyFunc: byHeader,
		Limit:   ratelimit.MustParseLimit("3/min"),
		Now:     c.Now,
	}))
	epoch := c.Now().Unix()
	tests := []struct {
		status                              int
		policy, rateLimit, remaining, retry string
		reset                               int64
	}{
		{200, `"3/min";q=3;w=60`, `"3/min";r=2;t=20`, "2", "", epoch + 20},
		{200, `"3/min";q=3;w=60`, `"3/min";r=1;t=40`, "1", "", epoch + 40},
		{200, `"3/min";q=3;w=60`, `"3/min";r=0;t=60`, "0", "", epoch + 60},
		{429, `"3/min";q=3;w=60`, `"3/min";r=0;t=20`, "0", "20", epoch + 20},
	}
	for i, tt := range tests {
		w := s.get("key-1")
		h := w.Header()
		got := []string{strconv.Itoa(w.Code), h.Get("RateLimit-Policy"), h.Get("RateLimit"), h.Get("X-RateLimit-Limit"),
			h.Get("X-RateLimit-Remaining"), h.Get("X-RateLimit-Reset"), h.Get("Retry-After")}
		want := []string{strconv.Itoa(tt.status), tt.policy, tt.rateLimit, "3", tt.remaining, strconv.FormatInt(tt.reset, 10), tt.retry}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("request %d:\n got %q\nwant %q", i+1, got, want)
		}
	}
	if s.calls != 3 {
		t.Errorf("handler called %d times; want 3", s.calls)
	}
}

func TestMiddlewareRefusal(t *testing.T) {
	c := newClock()
	c.Advance(250 * time.Millisecond) // X-RateLimit-Reset rounds up
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now})
	s := newServer(ratelimit.Middleware(m, ratelimit.MiddlewareOptions{
		KeyFunc: byHeader,
		Limit:   ratelimit.MustParseLimit("100/min"),
		Now:     c.Now,
	}))
	for range 100 {
		s.get("k")
	}
	c.Advance(300 * time.Millisecond) // the next unit comes back in 300ms
	w := s.get("k")
	if w.Code != http.StatusTooManyRequests || s.calls != 100 {
		t.Fatalf("101st request: status %d, handler called %d times; want 429 and 100", w.Code, s.calls)
	}
	h := w.Header()
	wantHeaders := map[string]string{
		"Content-Type":           "application/problem+json",
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "no-store",
		"Retry-After":            "1", // 300ms, rounded up
		"RateLimit":              `"100/min";r=0;t=1`,
		"X-RateLimit-Remaining":  "0",
		"X-RateLimit-Reset":      strconv.FormatInt(c.Now().Unix()+2, 10),
	}
	for k, v := range wantHeaders {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %q; want %q", k, got, v)
		}
	}
	const body = `{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"Rate limit 100/min exceeded; retry in 1 s.","code":"rate_limited"}` + "\n"
	if w.Body.String() != body {
		t.Errorf("body:\n got %s\nwant %s", w.Body, body)
	}
}

func TestMiddlewareNamedPolicy(t *testing.T) {
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	s := newServer(ratelimit.Middleware(m, ratelimit.MiddlewareOptions{
		KeyFunc: byHeader,
		Limit:   ratelimit.MustParseLimit("50/15m"),
		Policy:  `api "v1" \ global`,
	}))
	h := s.get("k").Header()
	if got, want := h.Get("RateLimit-Policy"), `"api \"v1\" \\ global";q=50;w=900`; got != want {
		t.Errorf("RateLimit-Policy: %s; want %s", got, want)
	}
	if got, want := h.Get("RateLimit"), `"api \"v1\" \\ global";r=49;t=18`; got != want {
		t.Errorf("RateLimit: %s; want %s", got, want)
	}
}

// TestMiddlewareGlobalAndPerKey is the seed's setup: 50 requests per 15
// minutes for the whole API, and 100 per minute per API key.
func TestMiddlewareGlobalAndPerKey(t *testing.T) {
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	global := ratelimit.Middleware(m, ratelimit.MiddlewareOptions{
		KeyFunc: func(*http.Request) (string, error) { return "all", nil },
		Limit:   ratelimit.MustParseLimit("50/15m"),
		Policy:  "global",
	})
	perKey := ratelimit.Middleware(m, ratelimit.MiddlewareOptions{
		KeyFunc: byHeader,
		Limit:   ratelimit.MustParseLimit("3/min"),
		Policy:  "per-key",
	})
	s := newServer(func(h http.Handler) http.Handler { return global(perKey(h)) })

	w := s.get("a")
	if got := w.Header().Values("RateLimit-Policy"); fmt.Sprint(got) != `["global";q=50;w=900 "per-key";q=3;w=60]` {
		t.Errorf("RateLimit-Policy lines: %q", got)
	}
	if got := w.Header().Values("RateLimit"); fmt.Sprint(got) != `["global";r=49;t=18 "per-key";r=2;t=20]` {
		t.Errorf("RateLimit lines: %q", got)
	}
	// The X- fields describe the most restrictive limit.
	if got := w.Header().Get("X-RateLimit-Remaining") + "/" + w.Header().Get("X-RateLimit-Limit"); got != "2/3" {
		t.Errorf("X-RateLimit-Remaining/Limit = %s; want 2/3", got)
	}
	s.get("a")
	s.get("a")
	if w := s.get("a"); w.Code != 429 || w.Header().Get("Retry-After") != "20" {
		t.Fatalf("4th request of key a: %d, Retry-After %s; want 429 after 20s", w.Code, w.Header().Get("Retry-After"))
	}
	// Other keys share the global quota: 4 used above, 46 left.
	for i := range 46 {
		if w := s.get(fmt.Sprint("key-", i)); w.Code != 200 {
			t.Fatalf("request %d of other keys: %d", i, w.Code)
		}
	}
	w = s.get("b")
	if w.Code != 429 || w.Header().Values("RateLimit")[0] != `"global";r=0;t=18` {
		t.Fatalf("51st request overall: %d %q; want 429 from the global policy", w.Code, w.Header().Values("RateLimit"))
	}
	if s.calls != 49 {
		t.Errorf("handler called %d times; want 49", s.calls)
	}
}

func TestMiddlewarePoliciesKeepSeparateQuotas(t *testing.T) {
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	mw := func(policy string) func(http.Handler) http.Handler {
		return ratelimit.Middleware(m, ratelimit.MiddlewareOptions{KeyFunc: byHeader, Limit: ratelimit.PerHour(1), Policy: policy})
	}
	reads, writes, moreReads := newServer(mw("reads")), newServer(mw("writes")), newServer(mw("reads"))
	if reads.get("k").Code != 200 || writes.get("k").Code != 200 {
		t.Fatal("different policies share a quota")
	}
	if moreReads.get("k").Code != 429 {
		t.Fatal("two middlewares with the same policy name do not share a quota")
	}
}

func TestMiddlewareLimitFunc(t *testing.T) {
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	s := newServer(ratelimit.Middleware(m, ratelimit.MiddlewareOptions{
		KeyFunc: byHeader,
		Limit:   ratelimit.PerMinute(2),
		LimitFunc: func(r *http.Request, key string) (ratelimit.Limit, error) {
			switch {
			case strings.HasPrefix(key, "pro"):
				return ratelimit.PerMinute(5), nil
			case key == "broken":
				return ratelimit.Limit{}, errors.New("plan lookup failed")
			case key == "invalid":
				return ratelimit.Limit{Count: -1, Period: time.Minute}, nil
			}
			return ratelimit.Limit{}, nil // the default Limit
		},
	}))
	for i, want := range []int{200, 200, 429} {
		if w := s.get("free"); w.Code != want {
			t.Errorf("free request %d: %d; want %d", i, w.Code, want)
		}
	}
	for i, want := range []int{200, 200, 200, 200, 200, 429} {
		w := s.get("pro-1")
		if w.Code != want {
			t.Errorf("pro request %d: %d; want %d", i, w.Code, want)
		}
		if got := w.Header().Get("RateLimit-Policy"); got != `"5/min";q=5;w=60` {
			t.Errorf("pro RateLimit-Policy: %s", got)
		}
	}
	for _, key := range []string{"broken", "invalid"} {
		if w := s.get(key); w.Code != 500 || !strings.Contains(w.Body.String(), `"code":"rate_limiter_error"`) {
			t.Errorf("%s: %d %s; want a 500 problem", key, w.Code, w.Body)
		}
	}
}

func TestMiddlewareCost(t *testing.T) {
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	s := newServer(ratelimit.Middleware(m, ratelimit.MiddlewareOptions{
		KeyFunc: byHeader,
		Limit:   ratelimit.PerHour(5),
		Cost: func(r *http.Request) int {
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			return n
		},
	}))
	do := func(n int) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/batch?n="+strconv.Itoa(n), nil)
		s.h.ServeHTTP(w, r)
		return w
	}
	if w := do(3); w.Code != 200 || w.Header().Get("X-RateLimit-Remaining") != "2" {
		t.Fatalf("cost 3: %d, remaining %s", w.Code, w.Header().Get("X-RateLimit-Remaining"))
	}
	if w := do(3); w.Code != 429 || w.Header().Get("X-RateLimit-Remaining") != "2" {
		t.Fatalf("cost 3 with 2 left: %d, remaining %s", w.Code, w.Header().Get("X-RateLimit-Remaining"))
	}
	if w := do(6); w.Code != 500 {
		t.Fatalf("cost above the burst: %d; want 500", w.Code)
	}
}

// failing is a Limiter that always fails with err.
type failing struct{ err error }

func (f failing) Allow(ctx context.Context, key string, l ratelimit.Limit) (ratelimit.Decision, error) {
	return f.AllowN(ctx, key, l, 1)
}

func (f failing) AllowN(context.Context, string, ratelimit.Limit, int) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, f.err
}

func TestMiddlewareErrors(t *testing.T) {
	tests := []struct {
		name    string
		limiter ratelimit.Limiter
		keyFunc ratelimit.KeyFunc
		status  int
		code    string
	}{
		{"Unavailable", failing{fmt.Errorf("%w: redis: connection refused", ratelimit.ErrUnavailable)}, byHeader, 503, "rate_limiter_unavailable"},
		{"OtherLimiterError", failing{errors.New("boom")}, byHeader, 500, "rate_limiter_error"},
		{"KeyFuncError", ratelimit.NewMemory(ratelimit.MemoryOptions{}), func(*http.Request) (string, error) {
			return "", errors.New("no API key in context")
		}, 500, "rate_limiter_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(ratelimit.Middleware(tt.limiter, ratelimit.MiddlewareOptions{KeyFunc: tt.keyFunc, Limit: ratelimit.PerMinute(1)}))
			w := s.get("k")
			if w.Code != tt.status || s.calls != 0 {
				t.Fatalf("status %d, handler called %d times; want %d, 0", w.Code, s.calls, tt.status)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			if !strings.Contains(w.Body.String(), `"code":"`+tt.code+`"`) || strings.Contains(w.Body.String(), "connection refused") {
				t.Errorf("body %s; want code %s and no error text", w.Body, tt.code)
			}
		})
	}
}

func TestMiddlewareCustomResponses(t *testing.T) {
	var limited ratelimit.Decision
	var failed error
	opts := ratelimit.MiddlewareOptions{
		KeyFunc: byHeader,
		Limit:   ratelimit.PerMinute(1),
		OnLimited: func(w http.ResponseWriter, r *http.Request, d ratelimit.Decision) {
			limited = d
			if w.Header().Get("Retry-After") == "" {
				t.Error("OnLimited called before Retry-After was set")
			}
			http.Error(w, "slow down", http.StatusTooManyRequests)
		},
		OnError: func(w http.ResponseWriter, r *http.Request, err error) {
			failed = err
			w.WriteHeader(http.StatusTeapot)
		},
	}
	s := newServer(ratelimit.Middleware(ratelimit.NewMemory(ratelimit.MemoryOptions{}), opts))
	s.get("k")
	if w := s.get("k"); w.Body.String() != "slow down\n" || limited.Allowed || limited.RetryAfter <= 0 {
		t.Errorf("OnLimited not used: %q, %+v", w.Body, limited)
	}
	boom := errors.New("boom")
	s = newServer(ratelimit.Middleware(failing{boom}, opts))
	if w := s.get("k"); w.Code != http.StatusTeapot || failed != boom {
		t.Errorf("OnError not used: %d, %v", w.Code, failed)
	}
}

func TestMiddlewarePanicsOnBadConfiguration(t *testing.T) {
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	limit := ratelimit.PerMinute(1)
	tests := []struct {
		name string
		l    ratelimit.Limiter
		opts ratelimit.MiddlewareOptions
	}{
		{"NilLimiter", nil, ratelimit.MiddlewareOptions{KeyFunc: byHeader, Limit: limit}},
		{"NoKeyFunc", m, ratelimit.MiddlewareOptions{Limit: limit}},
		{"NoLimit", m, ratelimit.MiddlewareOptions{KeyFunc: byHeader}},
		{"InvalidLimit", m, ratelimit.MiddlewareOptions{KeyFunc: byHeader, Limit: ratelimit.Limit{Count: 10}}},
		{"InvalidDefaultWithLimitFunc", m, ratelimit.MiddlewareOptions{KeyFunc: byHeader, Limit: ratelimit.Limit{Count: 10},
			LimitFunc: func(*http.Request, string) (ratelimit.Limit, error) { return limit, nil }}},
		{"PolicyNotASCII", m, ratelimit.MiddlewareOptions{KeyFunc: byHeader, Limit: limit, Policy: "pläne"}},
		{"PolicyControl", m, ratelimit.MiddlewareOptions{KeyFunc: byHeader, Limit: limit, Policy: "a\nb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "ratelimit: ") {
					t.Fatalf("recovered %v; want a ratelimit: panic", r)
				}
			}()
			ratelimit.Middleware(tt.l, tt.opts)
		})
	}
	// A LimitFunc alone is enough.
	ratelimit.Middleware(m, ratelimit.MiddlewareOptions{KeyFunc: byHeader,
		LimitFunc: func(*http.Request, string) (ratelimit.Limit, error) { return limit, nil }})
}
