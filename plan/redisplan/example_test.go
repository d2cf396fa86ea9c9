package redisplan_test

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/plan/redisplan"
	"github.com/apikit/apikit/ratelimit"
)

// A fleet shares each user's budget through Redis; quota usage is also
// written to the store, so a lost Redis gives no one a fresh quota.
func Example() {
	client := redis.NewClient(&redis.Options{
		Addr: "127.0.0.1:6379",
		// Gives up at each decision's deadline, without a goroutine to
		// wait for it.
		ContextTimeoutEnabled: true,
	})
	var store plan.UsageStore // the SQL store, in the application
	if store == nil {
		return
	}
	flusher := plan.NewFlusher(store, plan.FlusherOptions{})
	defer flusher.Close(context.Background())
	decider := redisplan.New(client, redisplan.Options{Usage: flusher, FailClosed: true, Timeout: 50 * time.Millisecond})
	hobby := &plan.Plan{Name: "hobby", Limits: []ratelimit.Limit{ratelimit.PerSecond(10)}, Quota: plan.Quota{Count: 10_000, Period: plan.BillingPeriod}}
	d, err := decider.Decide(context.Background(), plan.Request{Plan: hobby, User: "42", Key: "4tQ2x9LmZpB7", Cost: 5})
	fmt.Println(d.Allowed, err)
}

// Options.Trace times every Redis round trip with any tracer; with
// OpenTelemetry, start a span and end it, recording the error.
func ExampleOptions_trace() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	decider := redisplan.New(rdb, redisplan.Options{
		Prefix: "favoritesapi:plan:",
		Trace: func(ctx context.Context, name string) (context.Context, func(error)) {
			start := time.Now()
			return ctx, func(err error) {
				// A failed round trip shows here even when the decider
				// fails open and the request is served.
				fmt.Println(name, time.Since(start), err)
			}
		},
	})
	_ = decider
}
