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
		// The decision and a GET, alternating in blocks of 64, so that
		// both meet the same load on a shared machine: the ratio is the
		// figure to compare (the target is at most 1.3).
		d := redisplan.New(client, redisplan.Options{Prefix: prefix, FailClosed: true, Timeout: 10 * time.Second})
		req := plan.Request{Plan: p, User: "u00000000002"}
		key := prefix + "get"
		client.Set(ctx, key, "1", 0)
		var decide, get time.Duration
		n := 0
		for b.Loop() {
			start := time.Now()
			for range 64 {
				if dec, err := d.Decide(ctx, req); err != nil || !dec.Allowed {
					b.Fatal(dec, err)
				}
			}
			mid := time.Now()
			for range 64 {
				if err := client.Get(ctx, key).Err(); err != nil {
					b.Fatal(err)
				}
			}
			decide, get, n = decide+mid.Sub(start), get+time.Since(mid), n+64
		}
		b.ReportMetric(float64(decide.Nanoseconds())/float64(n), "decide-ns")
		b.ReportMetric(float64(get.Nanoseconds())/float64(n), "GET-ns")
		b.ReportMetric(float64(decide)/float64(get), "x-GET")
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
