package redislimit_test

import (
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
