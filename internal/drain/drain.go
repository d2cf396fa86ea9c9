// Package drain writes what a component holds in memory when it closes:
// the shared last step of plan.Flusher.Close and usage.Meter.Close.
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
