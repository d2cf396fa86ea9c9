package redislimit_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/ratelimit/redislimit"
)

// TestLocalOvershoot runs 2 and 4 Local limiters (instances, each with
// its own connections) on one key at full speed, and checks that they
// admit no more than the documented bound: what an exact limiter admits
// over the same span (burst + rate × span) plus 2 × instances × the
// allowance of one sync interval. It prints the measured overshoot.
func TestLocalOvershoot(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds")
	}
	const (
		interval = 100 * time.Millisecond
		span     = 2 * time.Second
	)
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-8s %-9s %9s %9s %10s %10s %11s %6s\n", "limit", "instances", "admitted", "exact", "overshoot", "bound", "round trips", "syncs")
	for _, spec := range []string{"200/s", "20/s"} {
		for _, instances := range []int{2, 4} {
			limit := ratelimit.MustParseLimit(spec)
			prefix := testPrefix()
			limiters := make([]*redislimit.Local, instances)
			for i := range limiters {
				opt := redisOptions(t)
				opt.ContextTimeoutEnabled = true
				c := redis.NewClient(opt)
				t.Cleanup(func() { c.Close() })
				limiters[i] = redislimit.NewLocal(c, redislimit.LocalOptions{
					Options:      redislimit.Options{Prefix: prefix, FailClosed: true, Timeout: 10 * time.Second},
					SyncInterval: interval,
				})
			}
			var admitted atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			deadline := start.Add(span)
			for _, l := range limiters {
				for range 2 {
					wg.Go(func() {
						for time.Now().Before(deadline) {
							d, err := l.Allow(context.Background(), "shared", limit)
							if err != nil {
								t.Error(err)
								return
							}
							if d.Allowed {
								admitted.Add(1)
							}
							time.Sleep(50 * time.Microsecond)
						}
					})
				}
			}
			wg.Wait()
			elapsed := time.Since(start)
			var exact, syncs uint64
			for _, l := range limiters {
				l.Close(context.Background())
				st := l.LocalStats()
				exact, syncs = exact+st.Exact, syncs+st.Syncs
			}
			b := max(1, int64(float64(limit.Count)*float64(interval)/float64(limit.Period)))
			exactBound := int64(limit.BurstSize()) + int64(float64(limit.Count)*float64(elapsed)/float64(limit.Period))
			bound := 2 * int64(instances) * b
			over := admitted.Load() - exactBound
			fmt.Fprintf(&table, "%-8s %-9d %9d %9d %10d %10d %11d %6d\n", spec, instances, admitted.Load(), exactBound, over, bound, exact, syncs)
			if over > bound {
				t.Errorf("%s, %d instances: admitted %d in %v; exact %d, overshoot %d > bound %d",
					spec, instances, admitted.Load(), elapsed, exactBound, over, bound)
			}
			if admitted.Load() < exactBound-int64(limit.BurstSize()) {
				t.Errorf("%s, %d instances: admitted only %d in %v; exact %d", spec, instances, admitted.Load(), elapsed, exactBound)
			}
		}
	}
	t.Log(table.String())
}

// TestLocalSharesWithExact: a Local limiter and an exact Limiter with the
// same Prefix share a key's budget.
func TestLocalSharesWithExact(t *testing.T) {
	opt := redisOptions(t)
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	prefix := testPrefix()
	exact := redislimit.New(c, redislimit.Options{Prefix: prefix, FailClosed: true, Timeout: 10 * time.Second})
	local := redislimit.NewLocal(c, redislimit.LocalOptions{Options: redislimit.Options{Prefix: prefix, FailClosed: true, Timeout: 10 * time.Second}})
	defer local.Close(context.Background())
	limit := ratelimit.PerHour(4)
	ctx := context.Background()
	for i, l := range []ratelimit.Limiter{exact, local, exact, local} {
		if i == 3 {
			// The local view learns of the exact limiter's request at
			// the sync: before it, the view would admit (the overshoot
			// Local documents).
			if err := local.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if d, err := l.Allow(ctx, "k", limit); err != nil || !d.Allowed || d.Remaining != 3-i {
			t.Fatalf("request %d: %+v, %v; want allowed, %d remaining", i+1, d, err, 3-i)
		}
	}
	if err := local.Sync(ctx); err != nil { // sends the fourth request's unit
		t.Fatal(err)
	}
	for _, l := range []ratelimit.Limiter{exact, local} {
		if d, err := l.Allow(ctx, "k", limit); err != nil || d.Allowed {
			t.Fatalf("fifth request: %+v, %v; want refused", d, err)
		}
	}
}

// TestLocalDecidesLocally: once a key has a view, requests within its
// allowance take no round trip, and the units reach Redis at the sync.
func TestLocalDecidesLocally(t *testing.T) {
	c := redis.NewClient(redisOptions(t))
	t.Cleanup(func() { c.Close() })
	prefix := testPrefix()
	l := redislimit.NewLocal(c, redislimit.LocalOptions{
		Options:      redislimit.Options{Prefix: prefix, FailClosed: true, Timeout: 10 * time.Second},
		SyncInterval: time.Hour, // synced by hand
	})
	defer l.Close(context.Background())
	ctx := context.Background()
	limit := ratelimit.PerSecond(1000) // an allowance of 3,600,000 a sync: every request local
	for i := range 100 {
		if d, err := l.Allow(ctx, "k", limit); err != nil || !d.Allowed || d.Remaining != 999-i {
			t.Fatalf("request %d: %+v, %v", i+1, d, err)
		}
	}
	if st := l.LocalStats(); st.Exact != 1 {
		t.Fatalf("%d round trips for 100 requests; want 1 (the first)", st.Exact)
	}
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	exact := redislimit.New(c, redislimit.Options{Prefix: prefix, FailClosed: true, Timeout: 10 * time.Second})
	if d, err := exact.Allow(ctx, "k", limit); err != nil || d.Remaining < 899 || d.Remaining > 950 {
		t.Fatalf("after the sync, Redis has %+v, %v; want 899 (plus what refilled meanwhile)", d, err)
	}
	if st := l.Stats(); st.Allowed != 100 || st.Keys != 1 {
		t.Fatalf("Stats() = %+v", st)
	}
	// After Close, nothing is synced any more: decisions are exact.
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := l.Allow(ctx, "k", limit); err != nil || !d.Allowed {
		t.Fatalf("after Close: %+v, %v", d, err)
	}
	if st := l.LocalStats(); st.Exact != 2 {
		t.Fatalf("%d round trips; want 2 (the first request and the one after Close)", st.Exact)
	}
}

// holdReply is a go-redis hook that, once armed, holds back the reply of
// the first single (not pipelined) script call that charges units: Redis
// has run it, its caller does not know yet.
type holdReply struct {
	armed   atomic.Bool
	reached chan struct{}
	release chan struct{}
}

func (h *holdReply) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *holdReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		args := cmd.Args()
		if name := cmd.Name(); (name == "evalsha" || name == "eval") && len(args) >= 2 &&
			args[len(args)-2] != int64(0) && h.armed.CompareAndSwap(true, false) {
			close(h.reached)
			<-h.release
		}
		return err
	}
}

// decision is what a held request got.
type decision struct {
	d   ratelimit.Decision
	err error
}

// heldLocal is a Local limiter, synced only by hand, whose client holds
// back one reply on demand.
type heldLocal struct {
	*redislimit.Local
	hold *holdReply
}

func newHeldLocal(t *testing.T) heldLocal {
	c := redis.NewClient(redisOptions(t))
	t.Cleanup(func() { c.Close() })
	hold := &holdReply{reached: make(chan struct{}), release: make(chan struct{})}
	c.AddHook(hold)
	l := redislimit.NewLocal(c, redislimit.LocalOptions{
		Options:      redislimit.Options{Prefix: testPrefix(), FailClosed: true, Timeout: 10 * time.Second},
		SyncInterval: 6 * time.Minute, // for 10/h, an allowance of 1 a sync; never during a test
	})
	t.Cleanup(func() { l.Close(context.Background()) })
	return heldLocal{l, hold}
}

// allowHeld starts a request whose round trip charges the units pending,
// and returns once Redis has run it; its decision comes on the channel
// after h.hold.release is closed.
func (h heldLocal) allowHeld(t *testing.T, key string, limit ratelimit.Limit) <-chan decision {
	t.Helper()
	h.hold.armed.Store(true)
	done := make(chan decision, 1)
	go func() {
		d, err := h.Allow(context.Background(), key, limit)
		done <- decision{d, err}
	}()
	select {
	case <-h.hold.reached:
	case r := <-done:
		t.Fatalf("the request took no round trip that charged units: %+v, %v", r.d, r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request has not reached Redis after 10s")
	}
	return done
}

// TestLocalRefusesOnlyWhatRedisWould: a round trip that reaches Redis
// before a sync but answers after it must not have its units counted
// twice in the view, or the view would refuse requests Redis admits.
func TestLocalRefusesOnlyWhatRedisWould(t *testing.T) {
	l := newHeldLocal(t)
	ctx := context.Background()
	limit := ratelimit.PerHour(10) // an allowance of 1 a sync
	check := func(i int, d ratelimit.Decision, err error) {
		t.Helper()
		if err != nil || !d.Allowed || d.Remaining != 9-i {
			t.Fatalf("request %d: %+v, %v; want allowed, %d remaining", i+1, d, err, 9-i)
		}
	}
	allow := func(i int) {
		t.Helper()
		d, err := l.Allow(ctx, "k", limit)
		check(i, d, err)
	}
	allow(0) // exact: the view is made
	allow(1) // local: the allowance is spent, 1 unit pending
	// The third request sends the pending unit with its own; its reply
	// is held while a sync reads the bucket that already has both.
	third := l.allowHeld(t, "k", limit)
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	close(l.hold.release)
	r := <-third
	check(2, r.d, r.err)
	for i := 3; i < 10; i++ {
		allow(i)
	}
	if d, err := l.Allow(ctx, "k", limit); err != nil || d.Allowed {
		t.Fatalf("request 11: %+v, %v; want refused", d, err)
	}
}

// TestLocalCountsUnitsSentSinceTheView: units in flight that were sent
// after the view was set cannot be in it, so they count for a local
// refusal: a request they put over the limit takes no round trip.
func TestLocalCountsUnitsSentSinceTheView(t *testing.T) {
	l := newHeldLocal(t)
	ctx := context.Background()
	limit := ratelimit.PerHour(10) // an allowance of 1 a sync
	for i := range 2 {             // exact (the view is made), then local
		if d, err := l.Allow(ctx, "k", limit); err != nil || !d.Allowed {
			t.Fatalf("request %d: %+v, %v", i+1, d, err)
		}
	}
	// The third request carries the second's unit; its reply is held.
	third := l.allowHeld(t, "k", limit)
	// 2 units are spent for sure (the first, and the second's in
	// flight): 9 more cannot fit, and the view knows it.
	if d, err := l.AllowN(ctx, "k", limit, 9); err != nil || d.Allowed {
		t.Fatalf("9 units with 2 spent: %+v, %v; want refused", d, err)
	}
	if st := l.LocalStats(); st.Exact != 2 {
		t.Errorf("%d round trips; want 2 (the first and the third request): the refusal took one", st.Exact)
	}
	close(l.hold.release)
	if r := <-third; r.err != nil || !r.d.Allowed {
		t.Fatalf("third request: %+v, %v; want allowed", r.d, r.err)
	}
}
