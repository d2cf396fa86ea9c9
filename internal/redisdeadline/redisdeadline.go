// Package redisdeadline ends a Redis command at its context's deadline
// whether or not the client does: the limiters and the plan decider give
// up on Redis after their timeout and fail open or closed.
//
// A client built with ContextTimeoutEnabled returns at the deadline by
// itself ([Honoured]); the command runs on the caller's goroutine. For
// another, [Wait] runs it on a goroutine of its own and returns at the
// deadline, leaving the command to finish in the background.
package redisdeadline

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Honoured reports whether client gives up at its context's deadline (its
// ContextTimeoutEnabled option).
func Honoured(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// Wait runs f on a goroutine of its own and returns its result, or ctx's
// error once ctx is done, whichever comes first. f should use ctx so that
// it stops soon after.
func Wait[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
