package conformance_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/conformance"
)

// The contenders run at once: each waits until all have started, which
// only returns if none waits for another to finish.
func TestWinnersOverlap(t *testing.T) {
	const n = 8
	var started atomic.Int32
	won := conformance.Winners(t, n, func(i int) (bool, error) {
		started.Add(1)
		deadline := time.Now().Add(10 * time.Second)
		for started.Load() < n {
			if time.Now().After(deadline) {
				t.Errorf("contender %d: only %d of %d started", i, started.Load(), n)
				return false, nil
			}
			time.Sleep(time.Millisecond)
		}
		return i%3 == 0, nil
	})
	if want := 3; won != want { // 0, 3 and 6
		t.Errorf("Winners = %d; want %d", won, want)
	}
}

// The context ends with the test, before its cleanups run.
func TestContextEndsWithTheTest(t *testing.T) {
	var ctx interface{ Err() error }
	t.Run("inner", func(t *testing.T) {
		c := conformance.Context(t)
		if _, ok := c.Deadline(); !ok {
			t.Error("Context has no deadline")
		}
		ctx = c
	})
	if ctx.Err() == nil {
		t.Error("Context still live after its test ended")
	}
}
