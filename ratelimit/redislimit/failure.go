package redislimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/apikit/apikit/internal/logthrottle"
	"github.com/apikit/apikit/ratelimit"
)

// failure is what a [Limiter] and a [Local] share when Redis fails them:
// the count, a warning at most once a second, and the answer their
// Options.FailClosed asks for.
type failure struct {
	timeout    time.Duration // the Redis timeout, for the error's wording
	failClosed bool
	log        *slog.Logger

	errors, failedOpen atomic.Uint64
	warned             logthrottle.Throttle
}

// fail counts a failed decision on key and answers it: the caller's own
// error if its context ended (the client went away: not Redis's fault),
// an error wrapping [ratelimit.ErrUnavailable] when failing closed, and
// otherwise an allowed decision as if the bucket were full.
func (f *failure) fail(ctx context.Context, key string, limit ratelimit.Limit, n int, err error) (ratelimit.Decision, error) {
	failures := f.errors.Add(1)
	if ctx.Err() != nil {
		return ratelimit.Decision{}, ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer from Redis within %v", f.timeout)
	}
	f.warn(ctx, err, key, failures)
	if f.failClosed {
		return ratelimit.Decision{}, fmt.Errorf("%w: %w", ratelimit.ErrUnavailable, err)
	}
	f.failedOpen.Add(1)
	return ratelimit.Decide(limit, float64(limit.BurstSize()), n), nil
}

// warn logs err at most once a second, with the key cut to 48 bytes.
func (f *failure) warn(ctx context.Context, err error, key string, failures uint64) {
	if f.log == nil {
		return
	}
	if !f.warned.Allow() {
		return
	}
	policy := "failing open"
	if f.failClosed {
		policy = "failing closed"
	}
	f.log.LogAttrs(ctx, slog.LevelWarn, "ratelimit: Redis failed; "+policy,
		slog.String("error", err.Error()), slog.String("key", logthrottle.Key(key)), slog.Uint64("failures", failures))
}
