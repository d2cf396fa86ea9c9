package subscription

import (
	"testing"
	"time"
)

func TestAnchor(t *testing.T) {
	start := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)
	anchor := time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		sub  Subscription
		want time.Time
	}{
		{Subscription{BillingCycleAnchor: anchor, CurrentPeriodStart: start}, anchor},
		{Subscription{CurrentPeriodStart: start}, start}, // a dev subscription from before anchors were stored
		{Subscription{}, time.Time{}},                    // the provisional state of a Checkout
	} {
		if got := c.sub.Anchor(); !got.Equal(c.want) {
			t.Errorf("Anchor of %+v = %v; want %v", c.sub, got, c.want)
		}
	}
}
