package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/fakeclock"
	"github.com/apikit/apikit/ratelimit"
)

// newClock returns the fake clock of this package's tests.
func newClock() *fakeclock.Clock { return fakeclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// step is one call to AllowN at an offset from the start of a test, and the
// decision it must get.
type step struct {
	at                     time.Duration
	n                      int
	allowed                bool
	remaining              int
	retryAfter, resetAfter time.Duration
}

func TestMemoryDecisions(t *testing.T) {
	tests := []struct {
		name  string
		limit string
		steps []step
	}{{
		name:  "BurstThenRefill",
		limit: "3/min", // one back every 20s
		steps: []step{
			{at: 0, n: 1, allowed: true, remaining: 2, resetAfter: 20 * time.Second},
			{at: 0, n: 1, allowed: true, remaining: 1, resetAfter: 40 * time.Second},
			{at: 0, n: 1, allowed: true, remaining: 0, resetAfter: 60 * time.Second},
			{at: 0, n: 1, allowed: false, remaining: 0, retryAfter: 20 * time.Second, resetAfter: 60 * time.Second},
			{at: 10 * time.Second, n: 1, allowed: false, remaining: 0, retryAfter: 10 * time.Second, resetAfter: 50 * time.Second},
			{at: 20 * time.Second, n: 1, allowed: true, remaining: 0, resetAfter: 60 * time.Second},
			{at: 39 * time.Second, n: 1, allowed: false, remaining: 0, retryAfter: time.Second, resetAfter: 41 * time.Second},
			{at: 80 * time.Second, n: 1, allowed: true, remaining: 2, resetAfter: 20 * time.Second},
			{at: time.Hour, n: 1, allowed: true, remaining: 2, resetAfter: 20 * time.Second},
		},
	}, {
		name:  "Weighted",
		limit: "10/min", // one back every 6s
		steps: []step{
			{at: 0, n: 4, allowed: true, remaining: 6, resetAfter: 24 * time.Second},
			{at: 0, n: 7, allowed: false, remaining: 6, retryAfter: 6 * time.Second, resetAfter: 24 * time.Second},
			{at: 0, n: 6, allowed: true, remaining: 0, resetAfter: 60 * time.Second},
			{at: 3 * time.Second, n: 1, allowed: false, remaining: 0, retryAfter: 3 * time.Second, resetAfter: 57 * time.Second},
			{at: 30 * time.Second, n: 5, allowed: true, remaining: 0, resetAfter: 60 * time.Second},
			{at: 30 * time.Second, n: 10, allowed: false, remaining: 0, retryAfter: 60 * time.Second, resetAfter: 60 * time.Second},
		},
	}, {
		name:  "BurstBelowCount",
		limit: "60/min burst 2", // one back every second, at most 2 at once
		steps: []step{
			{at: 0, n: 1, allowed: true, remaining: 1, resetAfter: time.Second},
			{at: 0, n: 1, allowed: true, remaining: 0, resetAfter: 2 * time.Second},
			{at: 0, n: 1, allowed: false, remaining: 0, retryAfter: time.Second, resetAfter: 2 * time.Second},
			{at: 500 * time.Millisecond, n: 1, allowed: false, remaining: 0, retryAfter: 500 * time.Millisecond, resetAfter: 1500 * time.Millisecond},
			{at: time.Second, n: 1, allowed: true, remaining: 0, resetAfter: 2 * time.Second},
			{at: time.Minute, n: 2, allowed: true, remaining: 0, resetAfter: 2 * time.Second},
		},
	}, {
		name:  "BurstAboveCount",
		limit: "1/s burst 5",
		steps: []step{
			{at: 0, n: 5, allowed: true, remaining: 0, resetAfter: 5 * time.Second},
			{at: 0, n: 1, allowed: false, remaining: 0, retryAfter: time.Second, resetAfter: 5 * time.Second},
			{at: 2500 * time.Millisecond, n: 2, allowed: true, remaining: 0, resetAfter: 5*time.Second - 500*time.Millisecond},
		},
	}, {
		name:  "FractionalInterval",
		limit: "100/min", // one back every 600ms
		steps: []step{
			{at: 0, n: 100, allowed: true, remaining: 0, resetAfter: time.Minute},
			{at: 300 * time.Millisecond, n: 1, allowed: false, remaining: 0, retryAfter: 300 * time.Millisecond, resetAfter: time.Minute - 300*time.Millisecond},
			{at: 600 * time.Millisecond, n: 1, allowed: true, remaining: 0, resetAfter: time.Minute},
			{at: 1800 * time.Millisecond, n: 1, allowed: true, remaining: 1, resetAfter: time.Minute - 1200*time.Millisecond + 600*time.Millisecond},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now})
			limit := ratelimit.MustParseLimit(tt.limit)
			start := c.Now()
			for i, s := range tt.steps {
				c.Set(start.Add(s.at))
				d, err := m.AllowN(context.Background(), "k", limit, s.n)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				want := ratelimit.Decision{Allowed: s.allowed, Limit: limit, Remaining: s.remaining, RetryAfter: s.retryAfter, ResetAfter: s.resetAfter}
				if d != want {
					t.Errorf("step %d (at %v, n=%d):\n got %+v\nwant %+v", i, s.at, s.n, d, want)
				}
			}
		})
	}
}

func TestMemoryLimitChangeKeepsUsage(t *testing.T) {
	c := newClock()
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now})
	ctx := context.Background()
	free, pro := ratelimit.MustParseLimit("5/h"), ratelimit.MustParseLimit("50/h")
	for range 5 {
		m.Allow(ctx, "k", free)
	}
	if d, _ := m.Allow(ctx, "k", free); d.Allowed {
		t.Fatal("allowed a sixth request under 5/h")
	}
	// An upgrade does not forget the five requests already made: the
	// bucket is empty, and now refills ten times as fast.
	d, _ := m.Allow(ctx, "k", pro)
	if d.Allowed || d.RetryAfter != 72*time.Second {
		t.Fatalf("right after the upgrade: %+v; want refused, retry after 72s", d)
	}
	c.Advance(72 * time.Second)
	if d, _ := m.Allow(ctx, "k", pro); !d.Allowed {
		t.Fatalf("72s after the upgrade: %+v; want allowed", d)
	}
}

func TestMemoryInvalidArguments(t *testing.T) {
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	ctx := context.Background()
	if _, err := m.Allow(ctx, "k", ratelimit.Limit{}); !errorsIs(err, ratelimit.ErrInvalidLimit) {
		t.Errorf("zero Limit: %v; want ErrInvalidLimit", err)
	}
	if got := m.Stats().Errors; got != 1 {
		t.Errorf("Stats().Errors = %d; want 1", got)
	}
}

func TestMemoryFullRefusesNewKeysAndKeepsOld(t *testing.T) {
	c := newClock()
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{MaxKeys: 2, Shards: 1, Now: c.Now})
	ctx := context.Background()
	limit := ratelimit.MustParseLimit("1/h")
	allowed := func(key string) bool {
		d, err := m.Allow(ctx, key, limit)
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed
	}
	if !allowed("a") || !allowed("b") {
		t.Fatal("first requests of a and b refused")
	}
	// The limiter is full of keys that have spent their quota: a new key
	// is refused, and a and b keep their state.
	d, _ := m.Allow(ctx, "c", limit)
	if d.Allowed || d.RetryAfter <= 0 {
		t.Fatalf("new key at a full limiter: %+v; want refused with a RetryAfter", d)
	}
	if allowed("a") || allowed("b") {
		t.Fatal("a new key reset the state of an old one")
	}
	st := m.Stats()
	if st.Keys != 2 || st.Overflowed != 1 || st.Expired != 0 {
		t.Fatalf("Stats() = %+v; want 2 keys, 1 overflowed, 0 expired", st)
	}
	// Once a bucket has refilled, its key carries no information and
	// makes room.
	c.Advance(time.Hour)
	if !allowed("c") {
		t.Fatal("new key refused although the old ones had refilled")
	}
}

func TestMemoryForgetsIdleKeys(t *testing.T) {
	c := newClock()
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Shards: 1, SweepInterval: 10 * time.Second, Now: c.Now})
	ctx := context.Background()
	minute, hour := ratelimit.MustParseLimit("1/min"), ratelimit.MustParseLimit("1/h")
	m.Allow(ctx, "refills-in-a-minute", minute)
	m.Allow(ctx, "refills-in-an-hour", hour)
	c.Advance(61 * time.Second)
	m.Allow(ctx, "other", minute) // a sweep runs inside calls
	st := m.Stats()
	if st.Keys != 2 || st.Expired != 1 {
		t.Fatalf("after a minute: Stats() = %+v; want 2 keys, 1 expired", st)
	}
	// The key that was kept still has its state.
	if d, _ := m.Allow(ctx, "refills-in-an-hour", hour); d.Allowed {
		t.Fatal("the kept key lost its state")
	}
}

func TestMemoryFloodOfKeysStaysBounded(t *testing.T) {
	c := newClock()
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{MaxKeys: 1000, Now: c.Now})
	ctx := context.Background()
	limit := ratelimit.MustParseLimit("10/h")
	// A victim spends part of its quota before the flood.
	for range 7 {
		m.Allow(ctx, "victim", limit)
	}
	for i := range 50_000 {
		if _, err := m.Allow(ctx, fmt.Sprintf("203.0.113.%d:%d", i%256, i), limit); err != nil {
			t.Fatal(err)
		}
		if i%5000 == 0 && m.Stats().Keys > 1000 {
			t.Fatalf("tracking %d keys; MaxKeys is 1000", m.Stats().Keys)
		}
		if i%1000 == 0 {
			c.Advance(time.Millisecond)
		}
	}
	st := m.Stats()
	if st.Keys > 1000 || st.Keys < 500 || st.Overflowed != uint64(50_000+1-st.Keys) {
		t.Fatalf("Stats() = %+v; want at most 1000 keys and the rest refused", st)
	}
	// The flood did not give the victim a fresh bucket: 3 of 10 are left.
	for i := range 4 {
		d, _ := m.Allow(ctx, "victim", limit)
		if d.Allowed != (i < 3) {
			t.Fatalf("victim request %d after the flood: %+v; want 3 allowed, then refused", i+1, d)
		}
	}
}

func TestMemoryConcurrentKeys(t *testing.T) {
	// Many goroutines on many keys at once: each key gets exactly its
	// quota, whatever the interleaving (run with -race).
	c := newClock()
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Shards: 4, Now: c.Now})
	limit := ratelimit.MustParseLimit("5/h")
	const keys, perKey = 64, 12
	var allowed [keys]atomic.Int32
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range keys * perKey / 8 {
				k := (g + i) % keys
				if d, _ := m.Allow(context.Background(), fmt.Sprint("key-", k), limit); d.Allowed {
					allowed[k].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for k := range allowed {
		if got := allowed[k].Load(); got != 5 {
			t.Errorf("key %d: %d allowed; want 5", k, got)
		}
	}
}

func TestNewMemoryPanicsOnNegativeOptions(t *testing.T) {
	for _, opts := range []ratelimit.MemoryOptions{{MaxKeys: -1}, {Shards: -1}, {SweepInterval: -time.Second}} {
		func() {
			defer func() {
				if r := recover(); r == nil || fmt.Sprint(r)[:11] != "ratelimit: " {
					t.Errorf("NewMemory(%+v) recovered %v; want a ratelimit: panic", opts, r)
				}
			}()
			ratelimit.NewMemory(opts)
		}()
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
