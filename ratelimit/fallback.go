package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/apikit/apikit/internal/logthrottle"
)

// FallbackOptions configures [Fallback]. The zero value is silent.
type FallbackOptions struct {
	// Logger receives a warning when the primary limiter fails and the
	// fallback decides instead, at most one a second, with the number of
	// failures so far; nil means no logging.
	Logger *slog.Logger
}

// FallbackLimiter is the [Limiter] that [Fallback] returns. It is safe for
// concurrent use.
type FallbackLimiter struct {
	primary, fallback Limiter
	log               *slog.Logger

	allowed, limited, errors, fallbacks atomic.Uint64
	warned                              logthrottle.Throttle
}

var _ Limiter = (*FallbackLimiter)(nil)

// Fallback returns a Limiter that decides with primary and, whenever
// primary fails, with fallback instead, so that a limit stays enforced
// while a shared backend is down. Use it for limits that must not switch
// off, such as those on sign-in, sign-up and failed authentications: a
// Redis limiter that fails closed (redislimit.Options.FailClosed) as
// primary, and a [Memory] as fallback:
//
//	login := ratelimit.Fallback(
//		redislimit.New(rdb, redislimit.Options{FailClosed: true}),
//		ratelimit.NewMemory(ratelimit.MemoryOptions{}),
//		ratelimit.FallbackOptions{Logger: logger},
//	)
//
// A primary that fails open (returns an allowing decision and no error)
// gives Fallback nothing to notice: make it fail closed.
//
// Primary "fails" when AllowN returns an error other than one wrapping
// [ErrInvalidLimit] or [ErrInvalidCost] (returned as they are: the
// arguments can never be allowed) while ctx has not ended (a caller that
// gave up gets ctx's error). Each fallback decision is counted in
// [Stats].Fallbacks, and logged as FallbackOptions says; if fallback fails
// too, its error is returned.
//
// While primary is down, each process enforces the limit on its own: with
// N instances behind a load balancer a key can get up to N times its quota,
// and what a key spent in the shared backend is not known to the fallback
// (it starts with a full bucket). Once primary answers again, it decides
// with the state it had. Fallback panics if primary or fallback is nil.
func Fallback(primary, fallback Limiter, opts FallbackOptions) *FallbackLimiter {
	if primary == nil || fallback == nil {
		panic("ratelimit: Fallback needs a primary and a fallback Limiter")
	}
	return &FallbackLimiter{primary: primary, fallback: fallback, log: opts.Logger}
}

// Allow is AllowN(ctx, key, limit, 1).
func (f *FallbackLimiter) Allow(ctx context.Context, key string, limit Limit) (Decision, error) {
	return f.AllowN(ctx, key, limit, 1)
}

// AllowN implements [Limiter]: primary's decision, or fallback's when
// primary fails (see [Fallback]).
func (f *FallbackLimiter) AllowN(ctx context.Context, key string, limit Limit, n int) (Decision, error) {
	d, err := f.primary.AllowN(ctx, key, limit, n)
	if err != nil {
		if errors.Is(err, ErrInvalidLimit) || errors.Is(err, ErrInvalidCost) || ctx.Err() != nil {
			f.errors.Add(1)
			return d, err
		}
		failures := f.fallbacks.Add(1)
		f.logFailure(ctx, key, failures, err)
		if d, err = f.fallback.AllowN(ctx, key, limit, n); err != nil {
			f.errors.Add(1)
			return d, err
		}
	}
	if d.Allowed {
		f.allowed.Add(1)
	} else {
		f.limited.Add(1)
	}
	return d, nil
}

func (f *FallbackLimiter) logFailure(ctx context.Context, key string, failures uint64, err error) {
	if f.log == nil {
		return
	}
	if !f.warned.Allow() {
		return
	}
	f.log.LogAttrs(ctx, slog.LevelWarn, "ratelimit: primary limiter failed; deciding with the fallback",
		slog.String("error", err.Error()), slog.String("key", logthrottle.Key(key)), slog.Uint64("fallbacks", failures))
}

// Stats returns a snapshot of f's counters: the decisions it returned
// (Allowed, Limited), the decisions the fallback made because primary
// failed (Fallbacks), and the errors it returned (Errors). The state of
// each limiter is in its own Stats.
func (f *FallbackLimiter) Stats() Stats {
	return Stats{
		Allowed:   f.allowed.Load(),
		Limited:   f.limited.Load(),
		Errors:    f.errors.Load(),
		Fallbacks: f.fallbacks.Load(),
	}
}
