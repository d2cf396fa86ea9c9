// Package conformance holds what apikit's conformance suites
// (store/storetest, usage/usagetest, billing/meter/metertest,
// apikey/apikeytest, plan/plantest) share: a bounded context for each
// test, and contenders released together for the tests of concurrent
// calls ("exactly one wins"). It imports nothing of apikit, so every
// suite may use it.
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

// Together runs f(0) … f(n-1) in n goroutines released at once, so that
// their calls overlap, and returns when all have returned.
func Together(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

// Winners runs try(0) … try(n-1) as [Together] does, and returns how many
// reported a win. An error fails the test (and counts as no win).
func Winners(tb testing.TB, n int, try func(i int) (won bool, err error)) int {
	tb.Helper()
	wins := make([]bool, n)
	Together(n, func(i int) {
		won, err := try(i)
		if err != nil {
			tb.Errorf("contender %d of %d: %v", i, n, err)
			return
		}
		wins[i] = won
	})
	won := 0
	for _, w := range wins {
		if w {
			won++
		}
	}
	return won
}
