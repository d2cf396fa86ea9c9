package store

import (
	"context"
	"errors"
	"testing"
)

// Without Options.Trace, a span costs no allocation, error or not.
func TestSpanWithoutTraceAllocatesNothing(t *testing.T) {
	s := &Store{}
	ctx := context.Background()
	err := errors.New("boom")
	if n := testing.AllocsPerRun(100, func() {
		_, end := s.span(ctx, "store.Key")
		end(err)
	}); n != 0 {
		t.Errorf("span without Trace allocates %v times", n)
	}
}
