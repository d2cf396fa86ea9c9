package redisplan_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/internal/testkit/tracetest"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/plan/plantest"
	"github.com/apikit/apikit/plan/redisplan"
	"github.com/apikit/apikit/ratelimit"
)

// markStore marks the span of each store call's context as used.
type markStore struct{ *plantest.UsageStore }

func (s markStore) AddUsage(ctx context.Context, batch []plan.Usage) error {
	tracetest.MarkUsed(ctx)
	return s.UsageStore.AddUsage(ctx, batch)
}

func (s markStore) Usage(ctx context.Context, identity string, p plan.Period, start time.Time) (int64, error) {
	tracetest.MarkUsed(ctx)
	return s.UsageStore.Usage(ctx, identity, p, start)
}

// TestTrace: every round trip and store call is traced with its name and
// error, with the context the tracer returned; a decision that restores
// a quota counter shows its two round trips and the store's read between.
func TestTrace(t *testing.T) {
	ctx := context.Background()
	client := redisClient(t)
	client.AddHook(tracetest.RedisHook{})
	var tr tracetest.Tracer
	store := markStore{plantest.NewUsageStore()}
	f := plan.NewFlusher(store, plan.FlusherOptions{Interval: time.Hour, Trace: tr.Trace})
	d := redisplan.New(client, redisplan.Options{Prefix: testPrefix(t, client), Usage: f, Trace: tr.Trace})
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
	spans := tr.Spans()
	if len(spans) != len(want) {
		t.Fatalf("spans %+v; want %v", spans, want)
	}
	for i, s := range spans {
		if s.Name != want[i] || !s.Ended || !s.Used {
			t.Errorf("span %d = %+v; want %q, ended, its context used", i, s, want[i])
		}
		if last := i == len(spans)-1; last != (s.Err != nil) {
			t.Errorf("span %d error %v", i, s.Err)
		}
	}
	if flushErr == nil || !errors.Is(flushErr, spans[len(spans)-1].Err) {
		t.Errorf("Flush: %v; want the store's error, which the span has", flushErr)
	}
}

// TestTraceFailOpen: a decision that fails open is served, and its span
// ends with Redis's error.
func TestTraceFailOpen(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: closedPort(t), MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { client.Close() })
	var tr tracetest.Tracer
	d := redisplan.New(client, redisplan.Options{Trace: tr.Trace})
	p := &plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(2)}}
	dec, err := d.Decide(context.Background(), plan.Request{Plan: p, User: "u"})
	if err != nil || !dec.FailedOpen {
		t.Fatalf("Decide = %+v, %v; want failed open", dec, err)
	}
	if spans := tr.Spans(); len(spans) != 1 || spans[0].Name != redisplan.TraceDecide || spans[0].Err == nil {
		t.Fatalf("spans %+v; want one %q with Redis's error", spans, redisplan.TraceDecide)
	}
}
