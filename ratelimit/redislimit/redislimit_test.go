package redislimit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/internal/testkit/testenv"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/ratelimit/redislimit"
)

// proxy is a TCP proxy on 127.0.0.1 in front of the test Redis, which a
// test can stop (Redis goes away) or start as a black hole (connections
// are accepted, and never answered).
type proxy struct {
	ln        net.Listener
	target    string
	blackhole bool
	mu        sync.Mutex
	conns     []net.Conn
}

func startProxy(t *testing.T, target string, blackhole bool) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, blackhole: blackhole}
	t.Cleanup(p.Stop)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.track(c) || p.blackhole {
				continue // held open, never read
			}
			go p.forward(c)
		}
	}()
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

// track remembers c to close it on Stop; it reports false (and closes c)
// if the proxy has stopped.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil && p.ln == nil {
		c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *proxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(up) {
		c.Close()
		return
	}
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

// Stop closes the listener and every connection: Redis is gone.
func (p *proxy) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func redisOptions(t testing.TB) *redis.Options {
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatalf("APIKIT_TEST_REDIS: %v", err)
	}
	return opt
}

// clientVia returns a client that reaches Redis through p, with go-redis's
// default timeouts (seconds), so that only the limiter's Timeout can
// explain a prompt answer.
func clientVia(t *testing.T, p *proxy) *redis.Client {
	opt := redisOptions(t)
	opt.Addr = p.Addr()
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func testPrefix() string { return fmt.Sprintf("apikit-test:%x:", rand.Uint64()) }

// slowest is how long past its Timeout a decision may take on a busy test
// machine; go-redis's own timeouts (3s read, 5s dial) are far longer.
const slowest = 700 * time.Millisecond

func TestFailurePolicy(t *testing.T) {
	redisAddr := redisOptions(t).Addr
	limit := ratelimit.PerMinute(100)
	const timeout = 100 * time.Millisecond
	tests := []struct {
		name      string
		blackhole bool
		stop      bool // stop the proxy after a first, working decision
	}{
		{name: "RedisStopped", stop: true},
		{name: "BlackHole", blackhole: true},
	}
	for _, tt := range tests {
		for _, failClosed := range []bool{false, true} {
			name := tt.name + map[bool]string{false: "/FailOpen", true: "/FailClosed"}[failClosed]
			t.Run(name, func(t *testing.T) {
				p := startProxy(t, redisAddr, tt.blackhole)
				var logs bytes.Buffer
				l := redislimit.New(clientVia(t, p), redislimit.Options{
					Prefix:     testPrefix(),
					Timeout:    timeout,
					FailClosed: failClosed,
					Logger:     slog.New(slog.NewTextHandler(&logs, nil)),
				})
				ctx := context.Background()
				if tt.stop {
					if d, err := l.Allow(ctx, "k", limit); err != nil || !d.Allowed || d.Remaining != 99 {
						t.Fatalf("through the working proxy: %+v, %v", d, err)
					}
					p.Stop()
				}
				for i := range 3 {
					start := time.Now()
					d, err := l.Allow(ctx, strings.Repeat("k", 100), limit)
					if took := time.Since(start); took > timeout+slowest {
						t.Errorf("decision %d took %v; Timeout is %v", i, took, timeout)
					}
					if failClosed {
						if !errors.Is(err, ratelimit.ErrUnavailable) || d.Allowed {
							t.Fatalf("decision %d: %+v, %v; want ErrUnavailable", i, d, err)
						}
					} else if err != nil || !d.Allowed || d.Remaining != 99 {
						t.Fatalf("decision %d: %+v, %v; want allowed as if the bucket were full", i, d, err)
					}
				}
				st := l.Stats()
				wantOpen := uint64(3)
				if failClosed {
					wantOpen = 0
				}
				if st.Errors != 3 || st.FailedOpen != wantOpen {
					t.Errorf("Stats() = %+v; want 3 errors, %d failed open", st, wantOpen)
				}
				// One warning for the burst of failures, with the key cut short.
				if n := strings.Count(logs.String(), "level=WARN"); n != 1 || strings.Contains(logs.String(), strings.Repeat("k", 100)) {
					t.Errorf("logged %d warnings (want 1, key shortened):\n%s", n, logs.String())
				}
				if want := map[bool]string{false: "failing open", true: "failing closed"}[failClosed]; !strings.Contains(logs.String(), want) {
					t.Errorf("log does not say %q:\n%s", want, logs.String())
				}
			})
		}
	}
}

func TestUnreachableRedis(t *testing.T) {
	// A port nothing listens on any more: connections are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	l := redislimit.New(c, redislimit.Options{FailClosed: true})
	start := time.Now()
	_, err = l.Allow(context.Background(), "k", ratelimit.PerMinute(1))
	if !errors.Is(err, ratelimit.ErrUnavailable) || time.Since(start) > redislimit.DefaultTimeout+slowest {
		t.Fatalf("err %v after %v; want ErrUnavailable within the timeout", err, time.Since(start))
	}
}

func TestMiddlewareWhenRedisIsDown(t *testing.T) {
	p := startProxy(t, redisOptions(t).Addr, true)
	client := clientVia(t, p)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	byIP := ratelimit.IPKey(ratelimit.IPKeyOptions{})
	for _, tt := range []struct {
		failClosed bool
		status     int
	}{{false, 200}, {true, 503}} {
		l := redislimit.New(client, redislimit.Options{Timeout: 50 * time.Millisecond, FailClosed: tt.failClosed})
		h := ratelimit.Middleware(l, ratelimit.MiddlewareOptions{KeyFunc: byIP, Limit: ratelimit.PerMinute(100)})(handler)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if w.Code != tt.status {
			t.Errorf("FailClosed %v: status %d; want %d", tt.failClosed, w.Code, tt.status)
		}
		if tt.failClosed && (!strings.Contains(w.Body.String(), `"code":"rate_limiter_unavailable"`) ||
			w.Header().Get("Content-Type") != "application/problem+json") {
			t.Errorf("fail-closed response: %v %s", w.Header(), w.Body)
		}
	}
}

func TestCallerCancelIsNotARedisFailure(t *testing.T) {
	p := startProxy(t, redisOptions(t).Addr, true)
	l := redislimit.New(clientVia(t, p), redislimit.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	d, err := l.Allow(ctx, "k", ratelimit.PerMinute(1))
	if !errors.Is(err, context.DeadlineExceeded) || d.Allowed || errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("%+v, %v; want the caller's context error", d, err)
	}
	if st := l.Stats(); st.FailedOpen != 0 {
		t.Fatalf("Stats() = %+v; a caller giving up must not fail open", st)
	}
}

func TestNewPanics(t *testing.T) {
	for _, tt := range []struct {
		name   string
		client redis.UniversalClient
		opts   redislimit.Options
	}{
		{"NilClient", nil, redislimit.Options{}},
		{"NegativeTimeout", redis.NewClient(&redis.Options{}), redislimit.Options{Timeout: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "ratelimit: ") {
					t.Fatalf("recovered %v; want a ratelimit: panic", r)
				}
			}()
			redislimit.New(tt.client, tt.opts)
		})
	}
}

// TestFallbackWhenRedisIsDown: a login limit over Redis, with memory as
// the fallback, stays enforced when Redis goes away, and says so.
func TestFallbackWhenRedisIsDown(t *testing.T) {
	p := startProxy(t, redisOptions(t).Addr, false)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	primary := redislimit.New(clientVia(t, p), redislimit.Options{
		Prefix: testPrefix(), Timeout: 100 * time.Millisecond, FailClosed: true, Logger: logger,
	})
	l := ratelimit.Fallback(primary, ratelimit.NewMemory(ratelimit.MemoryOptions{}), ratelimit.FallbackOptions{Logger: logger})
	h := ratelimit.Middleware(l, ratelimit.MiddlewareOptions{
		KeyFunc: ratelimit.IPKey(ratelimit.IPKeyOptions{}), Limit: ratelimit.PerHour(3), Policy: "login",
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	post := func() int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/login", nil))
		return w.Code
	}
	if code := post(); code != 200 {
		t.Fatalf("with Redis up: %d", code)
	}
	p.Stop()
	// Redis is gone: memory decides, with a full bucket of its own (3).
	for i := range 4 {
		want := 200
		if i == 3 {
			want = 429
		}
		if code := post(); code != want {
			t.Fatalf("Redis down, request %d: %d; want %d", i+1, code, want)
		}
	}
	if st := l.Stats(); st.Fallbacks != 4 || st.Limited != 1 {
		t.Errorf("Stats() = %+v; want 4 fallbacks, 1 limited", st)
	}
	if st := primary.Stats(); st.Errors != 4 || st.FailedOpen != 0 {
		t.Errorf("Redis limiter Stats() = %+v; want 4 errors, none failed open", st)
	}
	if !strings.Contains(logs.String(), "deciding with the fallback") {
		t.Errorf("no log line about the fallback:\n%s", logs.String())
	}
}

func TestFallbackWhenRedisIsUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connections to addr are refused
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	l := ratelimit.Fallback(redislimit.New(c, redislimit.Options{FailClosed: true}),
		ratelimit.NewMemory(ratelimit.MemoryOptions{}), ratelimit.FallbackOptions{})
	for i := range 3 {
		d, err := l.Allow(context.Background(), "signup:203.0.113.7", ratelimit.PerHour(2))
		if err != nil || d.Allowed != (i < 2) {
			t.Fatalf("decision %d: %+v, %v; want 2 allowed then refused, from memory", i+1, d, err)
		}
	}
	if st := l.Stats(); st.Fallbacks != 3 {
		t.Errorf("Stats() = %+v; want 3 fallbacks", st)
	}
}
