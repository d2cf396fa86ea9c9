package apikey

import (
	"context"
	"testing"
)

// Without a Trace hook, a span costs no allocation.
func TestSpanWithoutTraceAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		_, end := span(nil, ctx, "apikey.Key")
		end(nil)
	}); n != 0 {
		t.Errorf("span without Trace allocates %v times", n)
	}
}
