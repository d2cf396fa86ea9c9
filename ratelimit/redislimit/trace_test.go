package redislimit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/internal/testkit/tracetest"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/ratelimit/redislimit"
)

func TestTrace(t *testing.T) {
	limit := ratelimit.PerMinute(100)
	ctx := context.Background()
	for _, direct := range []bool{false, true} {
		name := map[bool]string{false: "Goroutine", true: "ContextTimeoutEnabled"}[direct]
		t.Run("Exact/"+name, func(t *testing.T) {
			p := startProxy(t, redisOptions(t).Addr, false)
			opt := redisOptions(t)
			opt.Addr, opt.ContextTimeoutEnabled = p.Addr(), direct
			c := redis.NewClient(opt)
			t.Cleanup(func() { c.Close() })
			c.AddHook(tracetest.RedisHook{})
			var tr tracetest.Tracer
			l := redislimit.New(c, redislimit.Options{Prefix: testPrefix(), Timeout: 100 * time.Millisecond, Trace: tr.Trace})
			if d, err := l.Allow(ctx, "k", limit); err != nil || !d.Allowed {
				t.Fatal(d, err)
			}
			p.Stop()
			// Failing open: the caller sees no error, the trace does.
			if d, err := l.Allow(ctx, "k", limit); err != nil || !d.Allowed {
				t.Fatal(d, err)
			}
			spans := tr.Spans()
			if len(spans) != 2 {
				t.Fatalf("%d spans; want 2: %+v", len(spans), spans)
			}
			for i, s := range spans {
				if s.Name != redislimit.TraceAllow || !s.Ended || !s.Used {
					t.Errorf("span %d = %+v; want %q, ended, its context used", i, s, redislimit.TraceAllow)
				}
			}
			if spans[0].Err != nil || spans[1].Err == nil {
				t.Errorf("span errors %v, %v; want nil, then Redis's", spans[0].Err, spans[1].Err)
			}
		})
	}
	t.Run("Local", func(t *testing.T) {
		opt := redisOptions(t)
		opt.ContextTimeoutEnabled = true
		c := redis.NewClient(opt)
		t.Cleanup(func() { c.Close() })
		c.AddHook(tracetest.RedisHook{})
		var tr tracetest.Tracer
		l := redislimit.NewLocal(c, redislimit.LocalOptions{
			Options:      redislimit.Options{Prefix: testPrefix(), Trace: tr.Trace},
			SyncInterval: time.Hour, // synced by hand
		})
		defer l.Close(ctx)
		for range 3 { // one exact decision, two local ones
			if d, err := l.Allow(ctx, "k", limit); err != nil || !d.Allowed {
				t.Fatal(d, err)
			}
		}
		if err := l.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		spans := tr.Spans()
		if len(spans) != 2 || spans[0].Name != redislimit.TraceAllow || spans[1].Name != redislimit.TraceSync {
			t.Fatalf("spans %+v; want one %q and one %q", spans, redislimit.TraceAllow, redislimit.TraceSync)
		}
		for _, s := range spans {
			if !s.Ended || s.Err != nil || !s.Used {
				t.Errorf("span %+v: want ended without error, its context used", s)
			}
		}
	})
	t.Run("LocalSyncFails", func(t *testing.T) {
		p := startProxy(t, redisOptions(t).Addr, false)
		c := clientVia(t, p)
		var tr tracetest.Tracer
		l := redislimit.NewLocal(c, redislimit.LocalOptions{
			Options:      redislimit.Options{Prefix: testPrefix(), Trace: tr.Trace},
			SyncInterval: time.Hour,
		})
		defer l.Close(ctx)
		for range 2 {
			if _, err := l.Allow(ctx, "k", limit); err != nil {
				t.Fatal(err)
			}
		}
		p.Stop()
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		err := l.Sync(sctx)
		spans := tr.Spans()
		if err == nil || len(spans) != 2 || spans[1].Name != redislimit.TraceSync || !errors.Is(spans[1].Err, err) {
			t.Fatalf("Sync: %v; spans %+v; want the sync's error in its span", err, spans)
		}
	})
}

// The tracer is not called, and nothing is allocated for it, when Trace
// is nil: see BenchmarkRedisAllow in package ratelimit for the figures.
