// Package drain writes what a component holds in memory to its store:
// the background loop of plan.Flusher and usage.Meter ([Every]), and the
// last write when they close ([Flush]).
package drain

import (
	"context"
	"errors"
	"time"
)

// retryEvery is how long Flush waits between attempts.
const retryEvery = 100 * time.Millisecond

// Flush calls flush until it succeeds or ctx ends, waiting a little between
// attempts. A ctx without a deadline gets timeout, so that a store that is
// down cannot hold a shutdown forever. On failure it returns the last
// attempt's error joined with the context's.
func Flush(ctx context.Context, timeout time.Duration, flush func(context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	for {
		err := flush(ctx)
		if err == nil {
			return nil
		}
		t := time.NewTimer(retryEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

// Every calls flush every interval, and whenever kick receives (a nil
// kick never does), until stop is closed; then it closes done. Each call
// gets a context of its own bounded by timeout, and a failed call is
// passed to failed, with that context; what was not written is the
// caller's to keep for the next call. Run it in a goroutine of its own.
func Every(stop, kick <-chan struct{}, done chan<- struct{}, interval, timeout time.Duration,
	flush func(context.Context) error, failed func(context.Context, error)) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-kick:
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		if err := flush(ctx); err != nil {
			failed(ctx, err)
		}
		cancel()
	}
}
