package redislimit_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/ratelimit/redislimit"
)

// span is one call of Options.Trace, as a tracer would record it.
type span struct {
	name  string
	ended bool
	err   error
	ctxOK atomic.Bool // the round trip was made with the context Trace returned
}

type spanKey struct{}

// tracer records spans and checks that the context it returns is used.
type tracer struct {
	mu    sync.Mutex
	spans []*span
}

func (tr *tracer) trace(ctx context.Context, name string) (context.Context, func(error)) {
	s := &span{name: name}
	tr.mu.Lock()
	tr.spans = append(tr.spans, s)
	tr.mu.Unlock()
	return context.WithValue(ctx, spanKey{}, s), func(err error) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		s.ended, s.err = true, err
	}
}

// hook marks, for each command go-redis sends, the span of its context.
type hook struct{}

func (hook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if s, ok := ctx.Value(spanKey{}).(*span); ok {
			s.ctxOK.Store(true)
		}
		return next(ctx, cmd)
	}
}
func (hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if s, ok := ctx.Value(spanKey{}).(*span); ok {
			s.ctxOK.Store(true)
		}
		return next(ctx, cmds)
	}
}

// spanView is a span as read at the end of a test.
type spanView struct {
	name  string
	ended bool
	err   error
	ctxOK bool
}

func (tr *tracer) snapshot() []spanView {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make([]spanView, len(tr.spans))
	for i, s := range tr.spans {
		out[i] = spanView{s.name, s.ended, s.err, s.ctxOK.Load()}
	}
	return out
}

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
			c.AddHook(hook{})
			var tr tracer
			l := redislimit.New(c, redislimit.Options{Prefix: testPrefix(), Timeout: 100 * time.Millisecond, Trace: tr.trace})
			if d, err := l.Allow(ctx, "k", limit); err != nil || !d.Allowed {
				t.Fatal(d, err)
			}
			p.Stop()
			// Failing open: the caller sees no error, the trace does.
			if d, err := l.Allow(ctx, "k", limit); err != nil || !d.Allowed {
				t.Fatal(d, err)
			}
			spans := tr.snapshot()
			if len(spans) != 2 {
				t.Fatalf("%d spans; want 2: %+v", len(spans), spans)
			}
			for i, s := range spans {
				if s.name != redislimit.TraceAllow || !s.ended || !s.ctxOK {
					t.Errorf("span %d = %+v; want %q, ended, its context used", i, s, redislimit.TraceAllow)
				}
			}
			if spans[0].err != nil || spans[1].err == nil {
				t.Errorf("span errors %v, %v; want nil, then Redis's", spans[0].err, spans[1].err)
			}
		})
	}
	t.Run("Local", func(t *testing.T) {
		opt := redisOptions(t)
		opt.ContextTimeoutEnabled = true
		c := redis.NewClient(opt)
		t.Cleanup(func() { c.Close() })
		c.AddHook(hook{})
		var tr tracer
		l := redislimit.NewLocal(c, redislimit.LocalOptions{
			Options:      redislimit.Options{Prefix: testPrefix(), Trace: tr.trace},
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
		spans := tr.snapshot()
		if len(spans) != 2 || spans[0].name != redislimit.TraceAllow || spans[1].name != redislimit.TraceSync {
			t.Fatalf("spans %+v; want one %q and one %q", spans, redislimit.TraceAllow, redislimit.TraceSync)
		}
		for _, s := range spans {
			if !s.ended || s.err != nil || !s.ctxOK {
				t.Errorf("span %+v: want ended without error, its context used", s)
			}
		}
	})
	t.Run("LocalSyncFails", func(t *testing.T) {
		p := startProxy(t, redisOptions(t).Addr, false)
		c := clientVia(t, p)
		var tr tracer
		l := redislimit.NewLocal(c, redislimit.LocalOptions{
			Options:      redislimit.Options{Prefix: testPrefix(), Trace: tr.trace},
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
		spans := tr.snapshot()
		if err == nil || len(spans) != 2 || spans[1].name != redislimit.TraceSync || !errors.Is(spans[1].err, err) {
			t.Fatalf("Sync: %v; spans %+v; want the sync's error in its span", err, spans)
		}
	})
}

// The tracer is not called, and nothing is allocated for it, when Trace
// is nil: see BenchmarkRedisAllow in package ratelimit for the figures.
