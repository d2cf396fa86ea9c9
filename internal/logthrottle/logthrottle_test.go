package logthrottle

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestKey(t *testing.T) {
	tests := []struct{ key, want string }{
		{"", ""},
		{"short", "short"},
		{strings.Repeat("a", MaxKey), strings.Repeat("a", MaxKey)},
		{strings.Repeat("a", MaxKey+1), strings.Repeat("a", MaxKey) + "…"},
		// "é" is 2 bytes: the 48th byte would split it.
		{strings.Repeat("a", MaxKey-1) + "éé", strings.Repeat("a", MaxKey-1) + "…"},
	}
	for _, tt := range tests {
		if got := Key(tt.key); got != tt.want {
			t.Errorf("Key(%q) = %q; want %q", tt.key, got, tt.want)
		}
	}
}

// Of many concurrent warnings, one is admitted, and the next only a
// second later.
func TestThrottle(t *testing.T) {
	var th Throttle
	var admitted atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if th.Allow() {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	if n := admitted.Load(); n != 1 {
		t.Fatalf("%d of 50 concurrent warnings admitted; want 1", n)
	}
	if th.Allow() {
		t.Fatal("a second warning admitted at once")
	}
	th.last.Add(-int64(1e9)) // as if a second had passed
	if !th.Allow() {
		t.Fatal("no warning admitted a second later")
	}
}
