// Package conformance holds what apikit's conformance suites (store/storetest,
// usage/usagetest, billing/meter/metertest, apikey/apikeytest) share: a
// bounded context for each test, and contenders released together for the
// tests of "exactly one wins". It imports nothing of apikit, so every suite
// may use it.
package conformance

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Timeout bounds every store call a suite makes through [Context]: a
// store that hangs fails its test instead of the whole run.
const Timeout = time.Minute

// Context returns a context that ends after [Timeout] or when the test
// ends, whichever comes first.
func Context(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(tb.Context(), Timeout)
	tb.Cleanup(cancel)
	return ctx
}

// Winners runs try(0) … try(n-1) in n goroutines released at once, so
// that their calls overlap, and returns how many reported a win. An error
// fails the test (and counts as no win).
func Winners(tb testing.TB, n int, try func(i int) (won bool, err error)) int {
	tb.Helper()
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		wins  = make([]bool, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			won, err := try(i)
			if err != nil {
				tb.Errorf("contender %d of %d: %v", i, n, err)
				return
			}
			wins[i] = won
		})
	}
	close(start)
	wg.Wait()
	won := 0
	for _, w := range wins {
		if w {
			won++
		}
	}
	return won
}
