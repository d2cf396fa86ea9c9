// Package plantest is the conformance suite of [plan.Decider]: every
// decider in this module passes it, and so must any other. It also has a
// [UsageStore] in memory for tests.
package plantest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/conformance"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
)

// Options is what the suite asks of the decider it builds.
type Options struct {
	// Now is the clock the decider must use for every decision.
	Now func() time.Time
	// Usage, if not nil, is the Flusher the decider must use.
	Usage *plan.Flusher
	// Overrides, if not nil, the decider must apply.
	Overrides plan.Overrides
}

// NewDecider returns a decider with no state (a fresh Redis prefix, say)
// configured with opts. The suite calls it several times per test; a
// decider built with the same Options.Usage store after another stands for
// a restart, with nothing kept but the store.
type NewDecider func(t *testing.T, opts Options) plan.Decider

// Clock is a fake clock for tests, safe for concurrent use.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a Clock at t.
func NewClock(t time.Time) *Clock {
	c := new(Clock)
	c.ns.Store(t.UnixNano())
	return c
}

// Now returns the clock's time, in UTC.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// UsageStore is a [plan.UsageStore] in memory. It can be made to fail.
type UsageStore struct {
	mu     sync.Mutex
	totals map[string]int64
	fail   error
	adds   int
}

// NewUsageStore returns an empty UsageStore.
func NewUsageStore() *UsageStore { return &UsageStore{totals: make(map[string]int64)} }

func usageKey(identity string, p plan.Period, start time.Time) string {
	return fmt.Sprintf("%s|%s|%d", identity, p, start.UnixNano())
}

// AddUsage implements [plan.UsageStore].
func (s *UsageStore) AddUsage(_ context.Context, batch []plan.Usage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.adds++
	for _, u := range batch {
		s.totals[usageKey(u.Identity, u.Period, u.Start)] += u.Count
	}
	return nil
}

// Usage implements [plan.UsageStore].
func (s *UsageStore) Usage(_ context.Context, identity string, p plan.Period, start time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	return s.totals[usageKey(identity, p, start)], nil
}

// Fail makes every later call return err (nil: succeed again).
func (s *UsageStore) Fail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

// Total returns the stored total of (identity, p, start), for a test to
// inspect: unlike Usage, it reads the store even while Fail is in effect,
// so a check for 0 cannot pass because the store is failing.
func (s *UsageStore) Total(identity string, p plan.Period, start time.Time) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.totals[usageKey(identity, p, start)]
}

// Adds returns the number of successful AddUsage calls.
func (s *UsageStore) Adds() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adds
}

// epoch is the suite's start: a Friday in a non-leap year, with a billing
// anchor on January 31 in view.
var epoch = time.Date(2025, time.February, 27, 10, 0, 0, 0, time.UTC)

// Run runs the conformance suite against the deciders newDecider builds.
func Run(t *testing.T, newDecider NewDecider) {
	ctx := context.Background()
	lim := ratelimit.MustParseLimit

	t.Run("EveryLimit", func(t *testing.T) {
		clock := NewClock(epoch)
		d := newDecider(t, Options{Now: clock.Now})
		p := &plan.Plan{Name: "two", Limits: []ratelimit.Limit{lim("3/s"), lim("5/min")}}
		req := plan.Request{Plan: p, User: "u1"}
		for i := range 3 {
			mustAllow(t, ctx, d, req, fmt.Sprint("request ", i+1))
		}
		dec := mustRefuse(t, ctx, d, req, plan.RateLimited)
		near(t, "RetryAfter (3/s)", dec.RetryAfter, time.Second/3)
		clock.Advance(time.Second)
		mustAllow(t, ctx, d, req, "4th after 1s")
		mustAllow(t, ctx, d, req, "5th after 1s")
		dec = mustRefuse(t, ctx, d, req, plan.RateLimited)
		// Now 5/min refuses: one unit back every 12s, 1s of it elapsed.
		near(t, "RetryAfter (5/min)", dec.RetryAfter, 11*time.Second)
		pols := dec.Policies()
		if len(pols) != 2 || pols[0].Remaining != 1 || pols[1].Remaining != 0 || pols[0].RetryAfter != 0 || pols[1].RetryAfter == 0 {
			t.Errorf("policies = %+v; want 3/s with 1 left and not refusing, 5/min empty and refusing", pols)
		}
		if c, _ := dec.Closest(); c.Limit != lim("5/min") {
			t.Errorf("Closest = %v; want 5/min", c.Name())
		}
	})

	t.Run("RefusalSpendsNothing", func(t *testing.T) {
		clock := NewClock(epoch)
		d := newDecider(t, Options{Now: clock.Now})
		p := &plan.Plan{Name: "q", Limits: []ratelimit.Limit{lim("10/s")}, Quota: plan.Quota{Count: 5, Period: plan.Day}}
		req := plan.Request{Plan: p, User: "u1", Cost: 3}
		dec := mustAllow(t, ctx, d, req, "cost 3")
		wantRemaining(t, dec, 7, 2)
		dec = mustRefuse(t, ctx, d, req, plan.QuotaExceeded)
		wantRemaining(t, dec, 7, 2)
		end := time.Date(2025, time.February, 28, 0, 0, 0, 0, time.UTC)
		if want := end.Sub(epoch); dec.RetryAfter != want {
			t.Errorf("RetryAfter = %v; want %v (midnight UTC)", dec.RetryAfter, want)
		}
		req.Cost = 2
		dec = mustAllow(t, ctx, d, req, "cost 2, the rest of the quota")
		wantRemaining(t, dec, 5, 0)
		// A request the limit refuses spends no quota either.
		p2 := &plan.Plan{Name: "q2", Limits: []ratelimit.Limit{lim("2/s")}, Quota: plan.Quota{Count: 100, Period: plan.Month}}
		req = plan.Request{Plan: p2, User: "u2", Cost: 2}
		mustAllow(t, ctx, d, req, "cost 2")
		dec = mustRefuse(t, ctx, d, req, plan.RateLimited)
		wantRemaining(t, dec, 0, 98)
	})

	t.Run("Budgets", func(t *testing.T) {
		clock := NewClock(epoch)
		d := newDecider(t, Options{Now: clock.Now})
		perUser := &plan.Plan{Name: "hobby", Limits: []ratelimit.Limit{lim("3/min")}, Budget: plan.PerUser}
		for i, key := range []string{"ka", "kb", "kc"} {
			mustAllow(t, ctx, d, plan.Request{Plan: perUser, User: "u1", Key: key}, fmt.Sprint("key ", i))
		}
		mustRefuse(t, ctx, d, plan.Request{Plan: perUser, User: "u1", Key: "kd"}, plan.RateLimited)
		mustAllow(t, ctx, d, plan.Request{Plan: perUser, User: "u2", Key: "ke"}, "another user")
		perKey := &plan.Plan{Name: "keyed", Limits: []ratelimit.Limit{lim("1/min")}, Budget: plan.PerKey}
		mustAllow(t, ctx, d, plan.Request{Plan: perKey, User: "u3", Key: "k1"}, "key 1")
		mustAllow(t, ctx, d, plan.Request{Plan: perKey, User: "u3", Key: "k2"}, "key 2 of the same user")
		mustRefuse(t, ctx, d, plan.Request{Plan: perKey, User: "u3", Key: "k1"}, plan.RateLimited)
	})

	t.Run("InvalidRequests", func(t *testing.T) {
		d := newDecider(t, Options{Now: NewClock(epoch).Now})
		p := &plan.Plan{Name: "p", Limits: []ratelimit.Limit{lim("5/s")}, Quota: plan.Quota{Count: 3, Period: plan.Day}}
		for name, req := range map[string]plan.Request{
			"NoPlan":        {User: "u"},
			"NoUser":        {Plan: p, Key: "k"},
			"CostOverBurst": {Plan: p, User: "u", Cost: 6},
			"CostOverQuota": {Plan: p, User: "u", Cost: 4},
			"NegativeCost":  {Plan: p, User: "u", Cost: -1},
			"InvalidLimit":  {Plan: &plan.Plan{Name: "bad", Limits: []ratelimit.Limit{{Count: 1}}}, User: "u"},
			"NoLimits":      {Plan: &plan.Plan{Name: "none"}, User: "u"},
			"InvalidQuota":  {Plan: &plan.Plan{Name: "bad", Limits: []ratelimit.Limit{lim("1/s")}, Quota: plan.Quota{Count: 1}}, User: "u"},
			"NoIdentity":    {Plan: p},
		} {
			t.Run(name, func(t *testing.T) {
				if _, err := d.Decide(ctx, req); !errors.Is(err, plan.ErrInvalidRequest) {
					t.Errorf("Decide: err = %v; want ErrInvalidRequest", err)
				}
			})
		}
	})

	t.Run("RefillAtTheAnchor", func(t *testing.T) {
		clock := NewClock(epoch) // Feb 27 10:00
		d := newDecider(t, Options{Now: clock.Now})
		p := &plan.Plan{Name: "monthly", Limits: []ratelimit.Limit{lim("100/s")}, Quota: plan.Quota{Count: 2, Period: plan.BillingPeriod}}
		anchor := time.Date(2024, time.January, 31, 12, 30, 0, 0, time.UTC)
		req := plan.Request{Plan: p, User: "u1", Anchor: anchor}
		mustAllow(t, ctx, d, req, "1")
		mustAllow(t, ctx, d, req, "2")
		dec := mustRefuse(t, ctx, d, req, plan.QuotaExceeded)
		refill := time.Date(2025, time.February, 28, 12, 30, 0, 0, time.UTC) // Jan 31 clamped
		if want := refill.Sub(epoch); dec.RetryAfter != want {
			t.Errorf("RetryAfter = %v; want %v (the anchor, clamped to Feb 28)", dec.RetryAfter, want)
		}
		if want := time.Date(2025, time.January, 31, 12, 30, 0, 0, time.UTC); !dec.PeriodStart.Equal(want) || !dec.PeriodEnd.Equal(refill) {
			t.Errorf("quota period = %v..%v; want %v..%v", dec.PeriodStart, dec.PeriodEnd, want, refill)
		}
		clock.Set(refill.Add(-time.Millisecond))
		mustRefuse(t, ctx, d, req, plan.QuotaExceeded)
		clock.Set(refill)
		dec = mustAllow(t, ctx, d, req, "at the refill")
		wantRemaining(t, dec, 99, 1)
	})

	t.Run("ChargeAfter", func(t *testing.T) {
		clock := NewClock(epoch)
		d := newDecider(t, Options{Now: clock.Now})
		p := &plan.Plan{Name: "c", Limits: []ratelimit.Limit{lim("10/min")}, Quota: plan.Quota{Count: 10, Period: plan.Day}}
		req := plan.Request{Plan: p, User: "u1", Deferred: true}
		dec := mustAllow(t, ctx, d, req, "deferred")
		wantRemaining(t, dec, 10, 10) // nothing spent
		req.Deferred, req.Cost = false, 8
		dec, err := d.Charge(ctx, req)
		if err != nil || !dec.Allowed {
			t.Fatalf("Charge(8) = %+v, %v; want allowed", dec, err)
		}
		wantRemaining(t, dec, 2, 2)
		req.Deferred = true
		mustAllow(t, ctx, d, req, "deferred with 2 left")
		req.Deferred, req.Cost = false, 5 // more than is left: overdraws
		if dec, err = d.Charge(ctx, req); err != nil {
			t.Fatal(err)
		}
		wantRemaining(t, dec, 0, 0)
		req.Deferred = true
		dec = mustRefuse(t, ctx, d, req, plan.QuotaExceeded)
		// 10/min is 3 units in debt: 4 units, 24s, until one is left.
		if pol := dec.Policies()[0]; pol.RetryAfter < 23*time.Second || pol.RetryAfter > 24*time.Second {
			t.Errorf("limit RetryAfter = %v; want 24s (in debt by 3)", pol.RetryAfter)
		}
	})

	t.Run("Peek", func(t *testing.T) {
		clock := NewClock(epoch)
		store := NewUsageStore()
		f1 := plan.NewFlusher(store, plan.FlusherOptions{Interval: time.Hour})
		d := newDecider(t, Options{Now: clock.Now, Usage: f1})
		p := &plan.Plan{Name: "peek", Limits: []ratelimit.Limit{lim("10/min")}, Quota: plan.Quota{Count: 6, Period: plan.Day}}
		req := plan.Request{Plan: p, User: "u1", Cost: 4}
		peek := func(req plan.Request, what string) plan.Decision {
			t.Helper()
			dec, err := d.Peek(ctx, req)
			if err != nil {
				t.Fatalf("Peek %s: %v", what, err)
			}
			return dec
		}
		dec := peek(req, "a fresh identity")
		if !dec.Allowed || dec.Plan != "peek" || dec.Cost != 4 {
			t.Errorf("Peek of a fresh identity = %+v; want allowed", dec)
		}
		wantRemaining(t, dec, 10, 6)
		// Peeking spends nothing, however often.
		peek(req, "again")
		dec = mustAllow(t, ctx, d, req, "cost 4 after peeking")
		wantRemaining(t, dec, 6, 2)
		dec = peek(req, "after spending")
		wantRemaining(t, dec, 6, 2)
		if dec.Allowed || dec.Refusal != plan.QuotaExceeded || dec.RetryAfter <= 0 {
			t.Errorf("Peek of cost 4 with 2 left: %+v; want refused by the quota", dec)
		}
		req.Cost = 2
		if dec = peek(req, "cost 2"); !dec.Allowed {
			t.Errorf("Peek of cost 2 with 2 left: refused (%v)", dec.Refusal)
		}
		wantRemaining(t, dec, 6, 2)
		// The quota used survives a restart, for Peek as for Decide.
		if err := f1.Close(ctx); err != nil {
			t.Fatal(err)
		}
		f2 := plan.NewFlusher(store, plan.FlusherOptions{Interval: time.Hour})
		t.Cleanup(func() { f2.Close(ctx) })
		d = newDecider(t, Options{Now: clock.Now, Usage: f2})
		dec = peek(req, "after a restart")
		wantRemaining(t, dec, 10, 2)
		if _, err := d.Peek(ctx, plan.Request{Plan: p}); !errors.Is(err, plan.ErrInvalidRequest) {
			t.Errorf("Peek without an identity: err = %v; want ErrInvalidRequest", err)
		}
	})

	t.Run("Overrides", func(t *testing.T) {
		clock := NewClock(epoch)
		bigger := plan.Quota{Count: 3, Period: plan.Day}
		ov := plan.OverrideMap{
			{Budget: plan.PerUser, ID: "vip"}:  {Limits: []ratelimit.Limit{lim("5/min")}, Quota: &bigger},
			{Budget: plan.PerUser, ID: "open"}: {Quota: &plan.Quota{}},
		}
		d := newDecider(t, Options{Now: clock.Now, Overrides: ov})
		p := &plan.Plan{Name: "o", Limits: []ratelimit.Limit{lim("1/min")}, Quota: plan.Quota{Count: 2, Period: plan.Day}}
		mustAllow(t, ctx, d, plan.Request{Plan: p, User: "plain"}, "plain")
		mustRefuse(t, ctx, d, plan.Request{Plan: p, User: "plain"}, plan.RateLimited)
		for i := range 3 {
			mustAllow(t, ctx, d, plan.Request{Plan: p, User: "vip"}, fmt.Sprint("vip ", i))
		}
		mustRefuse(t, ctx, d, plan.Request{Plan: p, User: "vip"}, plan.QuotaExceeded)
		dec := mustAllow(t, ctx, d, plan.Request{Plan: p, User: "open"}, "open")
		if _, ok := dec.Quota(); ok || len(dec.Policies()) != 1 {
			t.Errorf("policies = %+v; want the limit alone (quota removed)", dec.Policies())
		}
	})

	t.Run("DurableQuota", func(t *testing.T) {
		clock := NewClock(epoch)
		store := NewUsageStore()
		p := &plan.Plan{Name: "free", Limits: []ratelimit.Limit{lim("100/s")}, Quota: plan.Quota{Count: 5, Period: plan.Day}}
		req := plan.Request{Plan: p, User: "u1"}
		f1 := plan.NewFlusher(store, plan.FlusherOptions{Interval: time.Hour})
		d1 := newDecider(t, Options{Now: clock.Now, Usage: f1})
		for i := range 4 {
			mustAllow(t, ctx, d1, req, fmt.Sprint("before the restart ", i))
		}
		if err := f1.Close(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Date(2025, time.February, 27, 0, 0, 0, 0, time.UTC)
		if n := store.Total("user:u1", plan.Day, start); n != 4 {
			t.Fatalf("stored after Close = %d; want 4", n)
		}
		// A new decider (a restart, or a Redis without the counter).
		f2 := plan.NewFlusher(store, plan.FlusherOptions{Interval: time.Hour})
		t.Cleanup(func() { f2.Close(ctx) })
		d2 := newDecider(t, Options{Now: clock.Now, Usage: f2})
		dec := mustAllow(t, ctx, d2, req, "the 5th, after the restart")
		wantRemaining(t, dec, 99, 0)
		mustRefuse(t, ctx, d2, req, plan.QuotaExceeded)
		// While the store is down, an identity whose counter must be
		// restored cannot be decided.
		store.Fail(errors.New("store down"))
		f3 := plan.NewFlusher(store, plan.FlusherOptions{Interval: time.Hour})
		d3 := newDecider(t, Options{Now: clock.Now, Usage: f3})
		if _, err := d3.Decide(ctx, plan.Request{Plan: p, User: "u2"}); !errors.Is(err, plan.ErrUnavailable) {
			t.Errorf("Decide with the store down: err = %v; want ErrUnavailable", err)
		}
		store.Fail(nil)
		f3.Close(ctx)
	})

	t.Run("Concurrent", func(t *testing.T) {
		clock := NewClock(epoch)
		d := newDecider(t, Options{Now: clock.Now})
		p := &plan.Plan{Name: "race", Limits: []ratelimit.Limit{lim("1000/s"), lim("100000/h")}, Quota: plan.Quota{Count: 150, Period: plan.Month}}
		var admitted atomic.Int64
		conformance.Together(16, func(g int) {
			for i := range 20 {
				dec, err := d.Decide(ctx, plan.Request{Plan: p, User: "shared", Key: fmt.Sprint(g), Cost: 1 + i%2})
				if err != nil {
					t.Error(err)
					return
				}
				if dec.Allowed {
					admitted.Add(int64(dec.Cost))
				}
			}
		})
		if n := admitted.Load(); n > 150 || n < 149 {
			t.Errorf("admitted %d units of a quota of 150; want 149 or 150 (never more)", n)
		}
	})
}

func mustAllow(t *testing.T, ctx context.Context, d plan.Decider, req plan.Request, what string) plan.Decision {
	t.Helper()
	dec, err := d.Decide(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !dec.Allowed || dec.Refusal != plan.NotRefused {
		t.Fatalf("%s: refused (%v, retry after %v); want allowed; policies %+v", what, dec.Refusal, dec.RetryAfter, dec.Policies())
	}
	return dec
}

func mustRefuse(t *testing.T, ctx context.Context, d plan.Decider, req plan.Request, why plan.Refusal) plan.Decision {
	t.Helper()
	dec, err := d.Decide(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Allowed || dec.Refusal != why || dec.RetryAfter <= 0 {
		t.Fatalf("decision = allowed %v, %v, retry after %v; want refused: %v", dec.Allowed, dec.Refusal, dec.RetryAfter, why)
	}
	return dec
}

// wantRemaining checks the first limit's and the quota's Remaining.
func wantRemaining(t *testing.T, dec plan.Decision, limit, quota int64) {
	t.Helper()
	pols := dec.Policies()
	q, _ := dec.Quota()
	if pols[0].Remaining != limit || q.Remaining != quota {
		t.Errorf("remaining: limit %d, quota %d; want %d, %d", pols[0].Remaining, q.Remaining, limit, quota)
	}
}

// near checks a duration within 2ms (Redis computes in float microseconds).
func near(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	if got < want-2*time.Millisecond || got > want+2*time.Millisecond {
		t.Errorf("%s = %v; want %v", what, got, want)
	}
}
