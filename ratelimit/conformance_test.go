package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/internal/testkit/testenv"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/ratelimit/redislimit"
)

// subject is a Limiter under test, with a way to let time pass: a fake
// clock for Memory, a real (bounded, short) sleep for Redis, whose script
// reads Redis's own clock.
type subject struct {
	ratelimit.Limiter
	wait func(time.Duration)
	// overshoot is how many units more than the limit the limiter may
	// admit to concurrent requests: 0 for exact limiters, the documented
	// bound for redislimit.Local.
	overshoot int32
}

type statser interface{ Stats() ratelimit.Stats }

func TestMemoryConformance(t *testing.T) {
	testConformance(t, func(t *testing.T) subject {
		c := newClock()
		return subject{ratelimit.NewMemory(ratelimit.MemoryOptions{Now: c.Now}), c.Advance, 0}
	})
}

func TestRedisConformance(t *testing.T) {
	client := redisClient(t)
	testConformance(t, func(t *testing.T) subject {
		// Fail closed with a generous timeout: on a loaded machine (and
		// under -race) a decision can take longer than the 100ms default,
		// and failing open would count as an extra allowed request.
		opts := redislimit.Options{Prefix: testPrefix(t, client), FailClosed: true, Timeout: 10 * time.Second}
		return subject{redislimit.New(client, opts), time.Sleep, 0}
	})
}

func TestRedisLocalConformance(t *testing.T) {
	testConformance(t, newLocalSubject(redisClient(t)))
}

// TestRedisClusterConformance runs the suite on a Redis Cluster, with
// the exact and the local limiter.
func TestRedisClusterConformance(t *testing.T) {
	client := clusterClient(t)
	t.Run("Exact", func(t *testing.T) {
		testConformance(t, func(t *testing.T) subject {
			opts := redislimit.Options{Prefix: testPrefix(t, client), FailClosed: true, Timeout: 10 * time.Second}
			return subject{redislimit.New(client, opts), time.Sleep, 0}
		})
	})
	t.Run("Local", func(t *testing.T) { testConformance(t, newLocalSubject(client)) })
}

// newLocalSubject builds redislimit.Local limiters over client. The
// conformance tables use limits whose allowance is 1 unit a sync, so
// concurrent requests on one instance may get up to 2 more (see
// redislimit.Local).
func newLocalSubject(client redis.UniversalClient) func(t *testing.T) subject {
	return func(t *testing.T) subject {
		l := redislimit.NewLocal(client, redislimit.LocalOptions{
			Options: redislimit.Options{Prefix: testPrefix(t, client), FailClosed: true, Timeout: 10 * time.Second},
		})
		t.Cleanup(func() { l.Close(context.Background()) })
		return subject{l, time.Sleep, 2}
	}
}

// testConformance checks the Limiter contract. Both limiters must pass the
// same table with the same Decisions; durations may be shorter by up to 100ms,
// since Redis's clock moves during the test.
func testConformance(t *testing.T, newSubject func(t *testing.T) subject) {
	ctx := context.Background()

	t.Run("Decisions", func(t *testing.T) {
		tests := []struct {
			limit string
			steps []step
		}{{
			limit: "5/h", // one back every 12 minutes
			steps: []step{
				{n: 1, allowed: true, remaining: 4, resetAfter: 12 * time.Minute},
				{n: 2, allowed: true, remaining: 2, resetAfter: 36 * time.Minute},
				{n: 3, allowed: false, remaining: 2, retryAfter: 12 * time.Minute, resetAfter: 36 * time.Minute},
				{n: 2, allowed: true, remaining: 0, resetAfter: time.Hour},
				{n: 1, allowed: false, remaining: 0, retryAfter: 12 * time.Minute, resetAfter: time.Hour},
				{n: 5, allowed: false, remaining: 0, retryAfter: time.Hour, resetAfter: time.Hour},
			},
		}, {
			limit: "60/h burst 3", // one back every minute, 3 at most
			steps: []step{
				{n: 1, allowed: true, remaining: 2, resetAfter: time.Minute},
				{n: 1, allowed: true, remaining: 1, resetAfter: 2 * time.Minute},
				{n: 1, allowed: true, remaining: 0, resetAfter: 3 * time.Minute},
				{n: 1, allowed: false, remaining: 0, retryAfter: time.Minute, resetAfter: 3 * time.Minute},
			},
		}, {
			limit: "100/min", // one back every 600ms: Redis's float clock must not show
			steps: []step{
				{n: 1, allowed: true, remaining: 99, resetAfter: 600 * time.Millisecond},
				{n: 98, allowed: true, remaining: 1, resetAfter: 59400 * time.Millisecond},
				{n: 2, allowed: false, remaining: 1, retryAfter: 600 * time.Millisecond, resetAfter: 59400 * time.Millisecond},
				{n: 1, allowed: true, remaining: 0, resetAfter: time.Minute},
			},
		}, {
			limit: "100/d burst 1000", // a bucket larger than the daily count
			steps: []step{
				{n: 999, allowed: true, remaining: 1, resetAfter: 999 * 864 * time.Second},
				{n: 2, allowed: false, remaining: 1, retryAfter: 864 * time.Second, resetAfter: 999 * 864 * time.Second},
				{n: 1, allowed: true, remaining: 0, resetAfter: 10 * 24 * time.Hour},
			},
		}}
		for _, tt := range tests {
			t.Run(tt.limit, func(t *testing.T) {
				l := newSubject(t)
				limit := ratelimit.MustParseLimit(tt.limit)
				for i, s := range tt.steps {
					d, err := l.AllowN(ctx, "k", limit, s.n)
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if d.Allowed != s.allowed || d.Remaining != s.remaining || d.Limit != limit ||
						!near(d.RetryAfter, s.retryAfter) || !near(d.ResetAfter, s.resetAfter) {
						t.Errorf("step %d (n=%d):\n got %+v\nwant %+v", i, s.n, d,
							ratelimit.Decision{Allowed: s.allowed, Limit: limit, Remaining: s.remaining, RetryAfter: s.retryAfter, ResetAfter: s.resetAfter})
					}
				}
			})
		}
	})

	t.Run("KeysAreIndependent", func(t *testing.T) {
		l := newSubject(t)
		limit := ratelimit.PerHour(1)
		for _, key := range []string{"a", "b", "ключ", strings.Repeat("x", 500)} {
			if d, err := l.Allow(ctx, key, limit); err != nil || !d.Allowed {
				t.Fatalf("first request of %.10q: %+v, %v", key, d, err)
			}
		}
		if d, _ := l.Allow(ctx, "a", limit); d.Allowed {
			t.Fatal("second request of a allowed")
		}
	})

	t.Run("RefillsAfterRetryAfter", func(t *testing.T) {
		l := newSubject(t)
		limit := ratelimit.MustParseLimit("20/s burst 1") // one every 50ms
		if d, _ := l.Allow(ctx, "k", limit); !d.Allowed {
			t.Fatal("first request refused")
		}
		d, _ := l.Allow(ctx, "k", limit)
		if d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 50*time.Millisecond {
			t.Fatalf("second request: %+v; want refused, retry within 50ms", d)
		}
		l.wait(d.RetryAfter)
		if d, _ := l.Allow(ctx, "k", limit); !d.Allowed {
			t.Fatalf("after waiting RetryAfter: %+v; want allowed", d)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		l := newSubject(t)
		limit := ratelimit.PerHour(5)
		tests := []struct {
			limit ratelimit.Limit
			n     int
			want  error
		}{
			{limit, 0, ratelimit.ErrInvalidCost},
			{limit, -1, ratelimit.ErrInvalidCost},
			{limit, 6, ratelimit.ErrInvalidCost},
			{ratelimit.Limit{}, 1, ratelimit.ErrInvalidLimit},
			{ratelimit.Limit{Count: 1, Period: time.Millisecond}, 1, ratelimit.ErrInvalidLimit},
		}
		for _, tt := range tests {
			if _, err := l.AllowN(ctx, "k", tt.limit, tt.n); !errors.Is(err, tt.want) {
				t.Errorf("AllowN(%+v, %d) = %v; want %v", tt.limit, tt.n, err, tt.want)
			}
		}
		// Nothing was used by the refused calls.
		if d, _ := l.AllowN(ctx, "k", limit, 5); !d.Allowed {
			t.Fatalf("the whole burst after invalid calls: %+v", d)
		}
	})

	t.Run("ExactlyNOfConcurrent", func(t *testing.T) {
		l := newSubject(t)
		const n, extra = 10, 15
		limit := ratelimit.PerHour(n)
		var allowed, failed atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range n + extra {
			wg.Go(func() {
				<-start
				d, err := l.Allow(ctx, "shared", limit)
				if err != nil {
					failed.Add(1)
				}
				if d.Allowed {
					allowed.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if got := allowed.Load(); got < n || got > n+l.overshoot || failed.Load() != 0 {
			t.Fatalf("%d of %d concurrent requests allowed, %d failed; want %d (+ at most %d)", got, n+extra, failed.Load(), n, l.overshoot)
		}
	})

	t.Run("Stats", func(t *testing.T) {
		l := newSubject(t)
		st, ok := l.Limiter.(statser)
		if !ok {
			t.Skip("no Stats method")
		}
		limit := ratelimit.PerHour(2)
		for range 3 {
			l.Allow(ctx, "k", limit)
		}
		l.AllowN(ctx, "k", limit, 3)
		got := st.Stats()
		if got.Allowed != 2 || got.Limited != 1 || got.Errors != 1 || got.FailedOpen != 0 {
			t.Fatalf("Stats() = %+v; want 2 allowed, 1 limited, 1 error", got)
		}
	})
}

// near reports whether got is at most want, and within 100ms of it:
// Redis's clock moves while the test runs.
func near(got, want time.Duration) bool {
	return got <= want && got > want-100*time.Millisecond
}

func TestRedisLimitersShareBudget(t *testing.T) {
	// Two limiters with their own connections, as on two servers.
	a, b := redisClient(t), redisClient(t)
	prefix := testPrefix(t, a)
	opts := redislimit.Options{Prefix: prefix, FailClosed: true, Timeout: 10 * time.Second}
	la, lb := redislimit.New(a, opts), redislimit.New(b, opts)
	const n = 10
	limit := ratelimit.PerHour(n)
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for i := range 3 * n {
		l := ratelimit.Limiter(la)
		if i%2 == 1 {
			l = lb
		}
		wg.Go(func() {
			d, err := l.Allow(context.Background(), "customer-1", limit)
			if err != nil {
				t.Error(err)
			}
			if d.Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != n {
		t.Fatalf("%d allowed across two limiters; want %d in all", allowed.Load(), n)
	}
	if sa, sb := la.Stats(), lb.Stats(); sa.Allowed+sb.Allowed != n || sa.Limited+sb.Limited != 2*n {
		t.Fatalf("Stats: %+v and %+v", sa, sb)
	}
}

// redisClient connects to APIKIT_TEST_REDIS, skipping the test if it is
// not set (failing under CI=true).
func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatalf("APIKIT_TEST_REDIS: %v", err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis at APIKIT_TEST_REDIS: %v", err)
	}
	return c
}

// clusterClient connects to the Redis Cluster in
// APIKIT_TEST_REDIS_CLUSTER, skipping the test if it is not set (failing
// under CI=true).
func clusterClient(t testing.TB) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.RedisCluster(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	if err := c.ForEachShard(context.Background(), func(ctx context.Context, s *redis.Client) error {
		return s.Ping(ctx).Err()
	}); err != nil {
		t.Fatalf("Redis Cluster at APIKIT_TEST_REDIS_CLUSTER: %v", err)
	}
	return c
}

// testPrefix returns a key prefix of its own for t, so that tests running
// at the same time against one Redis (other packages' too) never share
// keys, and deletes the test's keys when it ends.
func testPrefix(t testing.TB, c redis.UniversalClient) string {
	prefix := fmt.Sprintf("apikit-test:%x:", rand.Uint64())
	t.Cleanup(func() {
		ctx := context.Background()
		del := func(ctx context.Context, c redis.UniversalClient) error {
			iter := c.Scan(ctx, 0, "rate:"+prefix+"*", 100).Iterator()
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
	return prefix
}
