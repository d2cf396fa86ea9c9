package redisplan_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/plan/plantest"
	"github.com/apikit/apikit/plan/redisplan"
	"github.com/apikit/apikit/ratelimit"
)

type spanKey struct{}

// span is one call of a Trace option, as a tracer would record it.
type span struct {
	name  string
	ended bool
	err   error
	used  atomic.Bool // the call was made with the context Trace returned
}

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

// spanView is a span as read at the end of a test.
type spanView struct {
	name  string
	ended bool
	err   error
	used  bool
}

func (tr *tracer) snapshot() []spanView {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make([]spanView, len(tr.spans))
	for i, s := range tr.spans {
		out[i] = spanView{s.name, s.ended, s.err, s.used.Load()}
	}
	return out
}

// markHook marks the span of each command's context as used.
type markHook struct{}

func (markHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (markHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if s, ok := ctx.Value(spanKey{}).(*span); ok {
			s.used.Store(true)
		}
		return next(ctx, cmd)
	}
}
func (markHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// markStore marks the span of each store call's context as used.
type markStore struct{ *plantest.UsageStore }

func (s markStore) AddUsage(ctx context.Context, batch []plan.Usage) error {
	if sp, ok := ctx.Value(spanKey{}).(*span); ok {
		sp.used.Store(true)
	}
	return s.UsageStore.AddUsage(ctx, batch)
}

func (s markStore) Usage(ctx context.Context, identity string, p plan.Period, start time.Time) (int64, error) {
	if sp, ok := ctx.Value(spanKey{}).(*span); ok {
		sp.used.Store(true)
	}
	return s.UsageStore.Usage(ctx, identity, p, start)
}

// TestTrace: every round trip and store call is traced with its name and
// error, with the context the tracer returned; a decision that restores
// a quota counter shows its two round trips and the store's read between.
func TestTrace(t *testing.T) {
	ctx := context.Background()
	client := redisClient(t)
	client.AddHook(markHook{})
	var tr tracer
	store := markStore{plantest.NewUsageStore()}
	f := plan.NewFlusher(store, plan.FlusherOptions{Interval: time.Hour, Trace: tr.trace})
	d := redisplan.New(client, redisplan.Options{Prefix: testPrefix(t, client), Usage: f, Trace: tr.trace})
	p := &plan.Plan{Name: "hobby", Limits: []ratelimit.Limit{ratelimit.PerSecond(100)}, Quota: plan.Quota{Count: 1000, Period: plan.Month}}
	req := plan.Request{Plan: p, User: "u"}
	if _, err := d.Decide(ctx, req); err != nil { // restores: decide, restore, decide
		t.Fatal(err)
	}
	if _, err := d.Peek(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Charge(ctx, plan.Request{Plan: p, User: "u", Cost: 2}); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	store.Fail(errors.New("store down"))
	f.Record(plan.Identity{Budget: plan.PerUser, ID: "u"}, plan.Month, time.Now(), 1)
	flushErr := f.Flush(ctx)
	want := []string{redisplan.TraceDecide, plan.TraceRestore, redisplan.TraceDecide, redisplan.TracePeek,
		redisplan.TraceCharge, plan.TraceFlush, plan.TraceFlush}
	spans := tr.snapshot()
	if len(spans) != len(want) {
		t.Fatalf("spans %+v; want %v", spans, want)
	}
	for i, s := range spans {
		if s.name != want[i] || !s.ended || !s.used {
			t.Errorf("span %d = %+v; want %q, ended, its context used", i, s, want[i])
		}
		if last := i == len(spans)-1; last != (s.err != nil) {
			t.Errorf("span %d error %v", i, s.err)
		}
	}
	if flushErr == nil || !errors.Is(flushErr, spans[len(spans)-1].err) {
		t.Errorf("Flush: %v; want the store's error, which the span has", flushErr)
	}
}

// TestTraceFailOpen: a decision that fails open is served, and its span
// ends with Redis's error.
func TestTraceFailOpen(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: closedPort(t), MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { client.Close() })
	var tr tracer
	d := redisplan.New(client, redisplan.Options{Trace: tr.trace})
	p := &plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(2)}}
	dec, err := d.Decide(context.Background(), plan.Request{Plan: p, User: "u"})
	if err != nil || !dec.FailedOpen {
		t.Fatalf("Decide = %+v, %v; want failed open", dec, err)
	}
	if spans := tr.snapshot(); len(spans) != 1 || spans[0].name != redisplan.TraceDecide || spans[0].err == nil {
		t.Fatalf("spans %+v; want one %q with Redis's error", spans, redisplan.TraceDecide)
	}
}
