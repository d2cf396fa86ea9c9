package redisplan_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/internal/testkit/testenv"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/plan/plantest"
	"github.com/apikit/apikit/plan/redisplan"
	"github.com/apikit/apikit/ratelimit"
)

func redisClient(tb testing.TB) *redis.Client {
	tb.Helper()
	opts, err := redis.ParseURL(testenv.Redis(tb))
	if err != nil {
		tb.Fatal(err)
	}
	opts.ContextTimeoutEnabled = true // as the package recommends
	c := redis.NewClient(opts)
	tb.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		tb.Fatalf("Redis at APIKIT_TEST_REDIS: %v", err)
	}
	return c
}

var prefixes atomic.Int64

// testPrefix returns a key prefix no other test (or test run) uses, and
// deletes its keys at the end (on every master of a cluster); the Redis
// is shared, so never FLUSHDB.
func testPrefix(tb testing.TB, c redis.UniversalClient) string {
	p := fmt.Sprintf("apikit-test:plan:%d:%d:", time.Now().UnixNano(), prefixes.Add(1))
	tb.Cleanup(func() {
		ctx := context.Background()
		del := func(ctx context.Context, c redis.UniversalClient) error {
			iter := c.Scan(ctx, 0, p+"*", 100).Iterator()
			for iter.Next(ctx) {
				c.Del(ctx, iter.Val())
			}
			return nil
		}
		if cc, ok := c.(*redis.ClusterClient); ok {
			cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return del(ctx, c) })
			return
		}
		del(ctx, c)
	})
	return p
}

// TestRedisClusterConformance runs the suite on the Redis Cluster in
// APIKIT_TEST_REDIS_CLUSTER: an identity's state is one key under its
// hash tag, so each decision stays in one slot.
func TestRedisClusterConformance(t *testing.T) {
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.RedisCluster(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	if err := client.ForEachShard(context.Background(), func(ctx context.Context, s *redis.Client) error {
		return s.Ping(ctx).Err()
	}); err != nil {
		t.Fatalf("Redis Cluster at APIKIT_TEST_REDIS_CLUSTER: %v", err)
	}
	plantest.Run(t, func(t *testing.T, o plantest.Options) plan.Decider {
		return redisplan.New(client, redisplan.Options{
			Prefix: testPrefix(t, client), FailClosed: true, Timeout: 10 * time.Second,
			Now: o.Now, Usage: o.Usage, Overrides: o.Overrides,
		})
	})
}

func TestRedisConformance(t *testing.T) {
	client := redisClient(t)
	plantest.Run(t, func(t *testing.T, o plantest.Options) plan.Decider {
		return redisplan.New(client, redisplan.Options{
			Prefix: testPrefix(t, client), FailClosed: true, Timeout: 10 * time.Second,
			Now: o.Now, Usage: o.Usage, Overrides: o.Overrides,
		})
	})
}

// TestRedisConformanceGenericScripts runs the suite with the scripts that
// take their constants as arguments, which a Decider uses for the shapes
// past its cache of scripts with constants in the source.
func TestRedisConformanceGenericScripts(t *testing.T) {
	client := redisClient(t)
	plantest.Run(t, func(t *testing.T, o plantest.Options) plan.Decider {
		return redisplan.WithoutBakedScripts(redisplan.New(client, redisplan.Options{
			Prefix: testPrefix(t, client), FailClosed: true, Timeout: 10 * time.Second,
			Now: o.Now, Usage: o.Usage, Overrides: o.Overrides,
		}))
	})
}

// TestSharedAcrossInstances: two deciders (two instances) over one Redis
// share a user's budget, with Redis's own clock.
func TestSharedAcrossInstances(t *testing.T) {
	client := redisClient(t)
	prefix := testPrefix(t, client)
	a := redisplan.New(client, redisplan.Options{Prefix: prefix, FailClosed: true, Timeout: 10 * time.Second})
	b := redisplan.New(client, redisplan.Options{Prefix: prefix, FailClosed: true, Timeout: 10 * time.Second})
	p := &plan.Plan{Name: "hobby", Limits: []ratelimit.Limit{ratelimit.MustParseLimit("4/h")}, Quota: plan.Quota{Count: 100, Period: plan.Month}}
	ctx := context.Background()
	allowed := 0
	for i := range 9 {
		d := []plan.Decider{a, b}[i%2]
		dec, err := d.Decide(ctx, plan.Request{Plan: p, User: "u1", Key: fmt.Sprint("k", i%3)})
		if err != nil {
			t.Fatal(err)
		}
		if dec.Allowed {
			allowed++
		}
	}
	if allowed != 4 {
		t.Errorf("allowed %d of 9 requests across two instances and three keys; want 4", allowed)
	}
}

// TestKeysShareASlot: an identity's state is one key, under its hash tag.
func TestKeysShareASlot(t *testing.T) {
	client := redisClient(t)
	prefix := testPrefix(t, client)
	d := redisplan.New(client, redisplan.Options{Prefix: prefix, FailClosed: true, Timeout: 10 * time.Second})
	p := &plan.Plan{Name: "x", Limits: []ratelimit.Limit{ratelimit.PerSecond(5), ratelimit.PerHour(50)}, Quota: plan.Quota{Count: 9, Period: plan.Day}}
	if _, err := d.Decide(context.Background(), plan.Request{Plan: p, User: "42"}); err != nil {
		t.Fatal(err)
	}
	keys, err := client.Keys(context.Background(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != prefix+"{user:42}:s" {
		t.Fatalf("keys = %q; want one, %s{user:42}:s", keys, prefix)
	}
	// One string: for each of the 4 limit slots an id and a TAT, the
	// quota's period and count, and the expiry; 8 bytes each.
	if v, err := client.Get(context.Background(), keys[0]).Result(); err != nil || len(v) != 8*(2*plan.MaxLimits+3) {
		t.Errorf("state = %d bytes, %v; want %d", len(v), err, 8*(2*plan.MaxLimits+3))
	}
	// The state lives until the quota's period ends, and a second longer.
	ttl := client.PTTL(context.Background(), keys[0]).Val()
	if midnight := time.Until(time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)); ttl < midnight || ttl > midnight+2*time.Second {
		t.Errorf("TTL = %v; want the quota's period, %v, and a second", ttl, midnight)
	}
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestFailPolicy(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: closedPort(t), MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { client.Close() })
	p := &plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(2)}, Quota: plan.Quota{Count: 10, Period: plan.Day}}
	ctx := context.Background()

	t.Run("Closed", func(t *testing.T) {
		d := redisplan.New(client, redisplan.Options{FailClosed: true})
		_, err := d.Decide(ctx, plan.Request{Plan: p, User: "u"})
		if !errors.Is(err, plan.ErrUnavailable) || !errors.Is(err, ratelimit.ErrUnavailable) {
			t.Fatalf("err = %v; want ErrUnavailable (plan's and ratelimit's)", err)
		}
		if st := d.Stats(); st.Errors != 1 || st.FailedOpen != 0 {
			t.Errorf("stats = %+v", st)
		}
	})
	t.Run("Open", func(t *testing.T) {
		store := plantest.NewUsageStore()
		f := plan.NewFlusher(store, plan.FlusherOptions{})
		d := redisplan.New(client, redisplan.Options{Usage: f})
		dec, err := d.Decide(ctx, plan.Request{Plan: p, User: "u", Cost: 2})
		if err != nil || !dec.Allowed || !dec.FailedOpen {
			t.Fatalf("Decide = %+v, %v; want allowed, failed open", dec, err)
		}
		if err := f.Close(ctx); err != nil {
			t.Fatal(err)
		}
		// The usage is still counted durably, for billing and restores.
		if n := store.Total("user:u", plan.Day, dec.PeriodStart); n != 2 {
			t.Errorf("stored usage = %d; want 2", n)
		}
		if st := d.Stats(); st.FailedOpen != 1 || st.Allowed != 1 {
			t.Errorf("stats = %+v", st)
		}
	})
	t.Run("Timeout", func(t *testing.T) {
		// A listener that accepts and never answers.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		// With ContextTimeoutEnabled the client gives up at the deadline;
		// without, the decider does not wait for it (3 s by default).
		for _, honours := range []bool{true, false} {
			hole := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1, Protocol: 2, ContextTimeoutEnabled: honours})
			t.Cleanup(func() { hole.Close() })
			d := redisplan.New(hole, redisplan.Options{FailClosed: true, Timeout: 50 * time.Millisecond})
			start := time.Now()
			_, err = d.Decide(ctx, plan.Request{Plan: p, User: "u"})
			if !errors.Is(err, plan.ErrUnavailable) {
				t.Fatalf("ContextTimeoutEnabled %v: err = %v; want ErrUnavailable", honours, err)
			}
			if el := time.Since(start); el > time.Second {
				t.Errorf("ContextTimeoutEnabled %v: took %v; want about the 50ms timeout", honours, el)
			}
		}
	})
}

// TestShapes: each shape of request (1 to MaxLimits limits, with and
// without a quota, with the caller's clock or Redis's) has a script of
// its own; every one of them decides and spends.
func TestShapes(t *testing.T) {
	client := redisClient(t)
	prefix := testPrefix(t, client)
	all := []ratelimit.Limit{ratelimit.PerSecond(5), ratelimit.PerMinute(50), ratelimit.PerHour(500), ratelimit.MustParseLimit("5000/d")}
	ctx := context.Background()
	for n := 1; n <= plan.MaxLimits; n++ {
		for _, quota := range []bool{false, true} {
			for _, clock := range []bool{false, true} {
				name := fmt.Sprintf("%dlimits-quota=%t-clock=%t", n, quota, clock)
				p := &plan.Plan{Name: name, Limits: all[:n]}
				if quota {
					p.Quota = plan.Quota{Count: 3, Period: plan.Month}
				}
				opts := redisplan.Options{Prefix: prefix + name + ":", FailClosed: true, Timeout: 10 * time.Second}
				if clock {
					opts.Now = plantest.NewClock(time.Now()).Now
				}
				d := redisplan.New(client, opts)
				for i := range 4 {
					dec, err := d.Decide(ctx, plan.Request{Plan: p, User: "u"})
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					want := !quota || i < 3
					if dec.Allowed != want || len(dec.Policies()) != n+boolInt(quota) {
						t.Fatalf("%s: decision %d: allowed %t, %d policies", name, i, dec.Allowed, len(dec.Policies()))
					}
					if want && dec.Policies()[0].Remaining != int64(4-i) {
						t.Errorf("%s: decision %d: remaining %d; want %d", name, i, dec.Policies()[0].Remaining, 4-i)
					}
					if q, ok := dec.Quota(); ok && want && q.Remaining != int64(2-i) {
						t.Errorf("%s: decision %d: quota remaining %d; want %d", name, i, q.Remaining, 2-i)
					}
				}
			}
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
