package plan_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
)

// unlimited limits and quota that no benchmark reaches, so that every
// decision takes the admitting path, where the most work is done.
var (
	benchPlan = &plan.Plan{
		Name:   "bench",
		Limits: []ratelimit.Limit{{Count: ratelimit.MaxCount, Period: 1e9}, {Count: ratelimit.MaxCount, Period: 3600e9}},
		Quota:  plan.Quota{Count: plan.MaxQuota, Period: plan.Month},
	}
	benchLimit = ratelimit.Limit{Count: ratelimit.MaxCount, Period: 1e9}
)

// BenchmarkDecide compares a plan decision (two limits and a quota) with
// ratelimit.Memory's one-limit Allow, in the same run.
func BenchmarkDecide(b *testing.B) {
	ctx := context.Background()
	b.Run("plan-2limits+quota", func(b *testing.B) {
		m := plan.NewMemory(plan.MemoryOptions{})
		req := plan.Request{Plan: benchPlan, User: "u00000000001"}
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := m.Decide(ctx, req); !d.Allowed {
				b.Fatal("refused")
			}
		}
	})
	b.Run("ratelimit-1limit", func(b *testing.B) {
		m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := m.Allow(ctx, "k00000000001", benchLimit); !d.Allowed {
				b.Fatal("refused")
			}
		}
	})
	b.Run("plan-2limits+quota-parallel", func(b *testing.B) {
		m := plan.NewMemory(plan.MemoryOptions{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req := plan.Request{Plan: benchPlan, User: "u00000000001"}
			for pb.Next() {
				m.Decide(ctx, req)
			}
		})
	})
}

// BenchmarkMiddleware measures Middleware with two limits and a quota in
// memory around a handler that does nothing, against that handler alone
// and ratelimit.Middleware with one limit, in the same run. The ResponseWriter keeps its header map, so that only
// the middleware's own allocations count.
func BenchmarkMiddleware(b *testing.B) {
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	r := httptest.NewRequest("GET", "/v1/favorites", nil)
	run := func(b *testing.B, h http.Handler) {
		w := &headerWriter{h: make(http.Header, 8)}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, bare) })
	b.Run("plan-2limits+quota", func(b *testing.B) {
		m := plan.NewMemory(plan.MemoryOptions{})
		run(b, plan.Middleware(m, plan.MiddlewareOptions{
			Request: func(*http.Request) (plan.Request, error) {
				return plan.Request{Plan: benchPlan, User: "u00000000001"}, nil
			},
		})(bare))
	})
	b.Run("ratelimit-1limit", func(b *testing.B) {
		run(b, ratelimit.Middleware(ratelimit.NewMemory(ratelimit.MemoryOptions{}), ratelimit.MiddlewareOptions{
			KeyFunc: func(*http.Request) (string, error) { return "k00000000001", nil },
			Limit:   benchLimit,
		})(bare))
	})
}
