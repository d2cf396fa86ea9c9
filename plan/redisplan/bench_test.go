package redisplan_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/plan/redisplan"
	"github.com/apikit/apikit/ratelimit"
)

// BenchmarkDecide compares a decision (two limits and a quota, one
// EVALSHA) with a plain GET on the same Redis, in the same run. The
// client has ContextTimeoutEnabled, as the package recommends; the long
// Timeout keeps a hiccup of a shared machine from failing the run.
func BenchmarkDecide(b *testing.B) {
	client := redisClient(b)
	prefix := testPrefix(b, client)
	ctx := context.Background()
	p := &plan.Plan{
		Name:   "bench",
		Limits: []ratelimit.Limit{{Count: ratelimit.MaxCount, Period: 1e9}, {Count: ratelimit.MaxCount, Period: 3600e9}},
		Quota:  plan.Quota{Count: plan.MaxQuota, Period: plan.Month},
	}
	b.Run("plan-2limits+quota", func(b *testing.B) {
		d := redisplan.New(client, redisplan.Options{Prefix: prefix, FailClosed: true, Timeout: 10 * time.Second})
		req := plan.Request{Plan: p, User: "u00000000001"}
		b.ReportAllocs()
		for b.Loop() {
			if dec, err := d.Decide(ctx, req); err != nil || !dec.Allowed {
				b.Fatal(dec, err)
			}
		}
	})
	b.Run("vs-GET", func(b *testing.B) {
		// The decision, two floors and a GET, alternating in blocks of
		// 64, so that all meet the same load on a shared machine: the
		// ratios to the GET are the figures to compare (the target is at
		// most 1.3). The floors: EVALSHA of "return 1" with the
		// decision's number of arguments (what any script costs), and a
		// script that only GETs and SETs its key (what any limiter that
		// reads and writes its state in a script costs).
		d := redisplan.New(client, redisplan.Options{Prefix: prefix, FailClosed: true, Timeout: 10 * time.Second})
		req := plan.Request{Plan: p, User: "u00000000002"}
		key := prefix + "get"
		client.Set(ctx, key, "1", 0)
		noop := redis.NewScript("return 1")
		getSet := redis.NewScript("local v = redis.call('GET', KEYS[1]) redis.call('SET', KEYS[1], '1234567890123456', 'PX', 60000) return {1, 2, 3, 4}")
		args := []any{"d", 1, "l:1000000000/s", 1, 1, "l:1000000000/h", 3, 3, 1, "month:1764547200", 1767225600000000, 0}
		keys := []string{prefix + "{user:u00000000003}"}
		var times [4]time.Duration
		n := 0
		for b.Loop() {
			steps := [4]func() error{
				func() error {
					dec, err := d.Decide(ctx, req)
					if err == nil && !dec.Allowed {
						b.Fatal(dec)
					}
					return err
				},
				func() error { return noop.Run(ctx, client, keys, args...).Err() },
				func() error { return getSet.Run(ctx, client, keys, args...).Err() },
				func() error { return client.Get(ctx, key).Err() },
			}
			for i, step := range steps {
				start := time.Now()
				for range 64 {
					if err := step(); err != nil {
						b.Fatal(err)
					}
				}
				times[i] += time.Since(start)
			}
			n += 64
		}
		for i, name := range []string{"decide", "noop", "get+set", "GET"} {
			b.ReportMetric(float64(times[i].Nanoseconds())/float64(n), name+"-ns")
		}
		b.ReportMetric(float64(times[0])/float64(times[3]), "x-GET")
		b.ReportMetric(float64(times[1])/float64(times[3]), "noop-x-GET")
		b.ReportMetric(float64(times[2])/float64(times[3]), "get+set-x-GET")
	})
	b.Run("EVALSHA-noop", func(b *testing.B) {
		// The floor of any script: a round trip that runs Lua and does
		// nothing.
		noop := redis.NewScript("return 1")
		b.ReportAllocs()
		for b.Loop() {
			if err := noop.Run(ctx, client, []string{prefix + "noop"}).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GET", func(b *testing.B) {
		key := prefix + "get"
		client.Set(ctx, key, "1", 0)
		b.ReportAllocs()
		for b.Loop() {
			if err := client.Get(ctx, key).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
