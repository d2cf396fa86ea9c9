package memlimit

import (
	"fmt"
	"testing"
	"time"
)

// A flood of new keys never resets a key that has spent part of its
// budget; past the bound, Refuse refuses newcomers and Share lets them
// draw on one bucket.
func TestFloodKeepsSpentBudgets(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	for _, full := range []Full{Refuse, Share} {
		m := New("test", 2, time.Hour, clock, 10, full)
		for i, want := range []bool{true, true, false} {
			if got := m.Allow("victim"); got != want {
				t.Fatalf("victim's action %d = %v; want %v (a budget of 2)", i+1, got, want)
			}
		}
		admitted := 0
		for i := range 100 {
			if m.Allow(fmt.Sprint("new", i)) {
				admitted++
			}
		}
		now = now.Add(2 * time.Second) // past the sweep interval, nothing has refilled
		if m.Allow("victim") {
			t.Errorf("full=%d: the flood reset the victim's spent budget", full)
		}
		switch full {
		case Refuse:
			if admitted != 9 {
				t.Errorf("Refuse: %d new keys admitted, want the 9 that fit", admitted)
			}
		case Share:
			if admitted != 9+2 {
				t.Errorf("Share: %d new keys admitted, want the 9 that fit and 2 from the shared bucket", admitted)
			}
		}
		if m.Overflowed() == 0 {
			t.Errorf("full=%d: overflow not counted", full)
		}
	}
}
