package redislimit_test

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/ratelimit/redislimit"
)

// Every instance of the service runs this; they share one quota per key
// through Redis.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{
		Addr: "127.0.0.1:6379",
		// Lets an abandoned command stop at the limiter's Timeout too.
		ContextTimeoutEnabled: true,
	})
	limiter := redislimit.New(rdb, redislimit.Options{
		Prefix:  "favoritesapi:",
		Timeout: 50 * time.Millisecond,
		Logger:  slog.Default(),
	})
	perKey := ratelimit.Middleware(limiter, ratelimit.MiddlewareOptions{
		Policy:  "per-key",
		Limit:   ratelimit.MustParseLimit("100/min"),
		KeyFunc: func(r *http.Request) (string, error) { return r.Header.Get("X-Key-Id"), nil },
	})
	http.Handle("/api/", perKey(http.NotFoundHandler()))
}

// A fleet whose hot keys make a Redis round trip per request too costly
// decides locally and syncs every 100ms; a Redis Cluster works as well as
// a single Redis. Each instance closes its limiter on shutdown, which
// sends what it admitted since the last sync.
func ExampleNewLocal() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"},
		IsClusterMode:         true,
		ContextTimeoutEnabled: true,
	})
	limiter := redislimit.NewLocal(rdb, redislimit.LocalOptions{
		Options:      redislimit.Options{Prefix: "favoritesapi:", Logger: slog.Default()},
		SyncInterval: 100 * time.Millisecond,
	})
	defer limiter.Close(context.Background())
	perKey := ratelimit.Middleware(limiter, ratelimit.MiddlewareOptions{
		Policy:  "per-key",
		Limit:   ratelimit.MustParseLimit("1000/s"),
		KeyFunc: func(r *http.Request) (string, error) { return r.Header.Get("X-Key-Id"), nil },
	})
	http.Handle("/api/", perKey(http.NotFoundHandler()))
}

// Options.Trace times every Redis round trip with any tracer; with
// OpenTelemetry, start a span and end it, recording the error. This one
// prints what it sees.
func ExampleOptions_trace() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	limiter := redislimit.New(rdb, redislimit.Options{
		Prefix: "favoritesapi:",
		Trace: func(ctx context.Context, name string) (context.Context, func(error)) {
			start := time.Now()
			return ctx, func(err error) {
				// A failed round trip shows here even when the limiter
				// fails open and the request is served.
				slog.InfoContext(ctx, name, "took", time.Since(start), "error", err)
			}
		},
	})
	_ = limiter
}
