package ratelimit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/apikit/apikit/ratelimit"
)

// switchable is a Limiter that fails while down is set, and otherwise
// decides with a Memory of its own (standing in for a shared backend).
type switchable struct {
	down bool
	m    *ratelimit.Memory
}

func (s *switchable) Allow(ctx context.Context, key string, l ratelimit.Limit) (ratelimit.Decision, error) {
	return s.AllowN(ctx, key, l, 1)
}

func (s *switchable) AllowN(ctx context.Context, key string, l ratelimit.Limit, n int) (ratelimit.Decision, error) {
	if err := ratelimit.CheckCost(l, n); err != nil {
		return ratelimit.Decision{}, err
	}
	if s.down {
		return ratelimit.Decision{}, fmt.Errorf("%w: redis: connection refused", ratelimit.ErrUnavailable)
	}
	return s.m.AllowN(ctx, key, l, n)
}

func TestFallbackEnforcesWhilePrimaryIsDown(t *testing.T) {
	c := newClock()
	primary := &switchable{m: ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now})}
	var logs bytes.Buffer
	f := ratelimit.Fallback(primary, ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now}),
		ratelimit.FallbackOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	limit := ratelimit.PerHour(3)
	if d, err := f.Allow(ctx, "ada", limit); err != nil || !d.Allowed {
		t.Fatalf("primary up: %+v, %v", d, err)
	}
	primary.down = true
	for i := range 4 {
		d, err := f.Allow(ctx, "ada", limit)
		if err != nil {
			t.Fatalf("primary down, decision %d: error %v; want a decision from memory", i+1, err)
		}
		if d.Allowed != (i < 3) {
			t.Fatalf("primary down, decision %d: %+v; want 3 allowed, then refused", i+1, d)
		}
	}
	st := f.Stats()
	if st.Fallbacks != 4 || st.Allowed != 4 || st.Limited != 1 || st.Errors != 0 {
		t.Errorf("Stats() = %+v; want 4 fallbacks, 4 allowed, 1 limited", st)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), "deciding with the fallback") {
		t.Errorf("logged %d warnings (want 1 for the burst):\n%s", n, logs.String())
	}
	// Back up: the primary decides again, with the state it had.
	primary.down = false
	if d, err := f.Allow(ctx, "ada", limit); err != nil || !d.Allowed || d.Remaining != 1 {
		t.Fatalf("primary back: %+v, %v; want allowed with 1 remaining", d, err)
	}
	// Arguments that can never be allowed are not a failure of the primary.
	if _, err := f.AllowN(ctx, "ada", limit, 10); !errors.Is(err, ratelimit.ErrInvalidCost) {
		t.Errorf("cost above the burst: %v; want ErrInvalidCost", err)
	}
	if st := f.Stats(); st.Fallbacks != 4 || st.Errors != 1 {
		t.Errorf("Stats() = %+v; want 4 fallbacks, 1 error", st)
	}
}

func TestFallbackCallerGaveUp(t *testing.T) {
	f := ratelimit.Fallback(&switchable{down: true}, ratelimit.NewMemory(ratelimit.MemoryOptions{}), ratelimit.FallbackOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Allow(ctx, "k", ratelimit.PerMinute(1)); err == nil {
		t.Fatal("a cancelled caller got a decision from the fallback")
	}
	if st := f.Stats(); st.Fallbacks != 0 {
		t.Errorf("Stats() = %+v; want no fallback", st)
	}
}

func TestFallbackPanicsOnNil(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "ratelimit: ") {
			t.Errorf("recovered %v; want a ratelimit: panic", r)
		}
	}()
	ratelimit.Fallback(nil, ratelimit.NewMemory(ratelimit.MemoryOptions{}), ratelimit.FallbackOptions{})
}

func TestMiddlewareLogsRefusals(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	s := newServer(ratelimit.Middleware(ratelimit.NewMemory(ratelimit.MemoryOptions{}), ratelimit.MiddlewareOptions{
		KeyFunc: byHeader, Limit: ratelimit.PerMinute(1), Policy: "login", Logger: logger,
	}))
	s.get("203.0.113.7")
	if logs.Len() != 0 {
		t.Fatalf("an allowed request was logged: %s", logs.String())
	}
	s.get("203.0.113.7")
	if out := logs.String(); !strings.Contains(out, "level=INFO") || !strings.Contains(out, "ratelimit: request refused") ||
		!strings.Contains(out, "policy=login") || !strings.Contains(out, "key=203.0.113.7") || !strings.Contains(out, "retry_after=60") {
		t.Errorf("refusal log:\n%s", out)
	}
	logs.Reset()
	f := newServer(ratelimit.Middleware(failing{errors.New("boom")}, ratelimit.MiddlewareOptions{
		KeyFunc: byHeader, Limit: ratelimit.PerMinute(1), Logger: logger,
	}))
	f.get("k")
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "error=boom") {
		t.Errorf("error log:\n%s", out)
	}
}

// Keep limits on sign-in in force while Redis is down: a fail-closed Redis
// limiter, with memory as the fallback.
func ExampleFallback() {
	// primary would be redislimit.New(rdb, redislimit.Options{FailClosed: true}).
	primary := &switchable{down: true}
	limiter := ratelimit.Fallback(primary, ratelimit.NewMemory(ratelimit.MemoryOptions{}), ratelimit.FallbackOptions{})
	for range 3 {
		d, err := limiter.Allow(context.Background(), "login:203.0.113.7", ratelimit.PerMinute(2))
		fmt.Println(d.Allowed, err)
	}
	fmt.Println("fallbacks:", limiter.Stats().Fallbacks)
	// Output:
	// true <nil>
	// true <nil>
	// false <nil>
	// fallbacks: 3
}
