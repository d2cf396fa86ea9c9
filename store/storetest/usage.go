package storetest

import (
	"testing"

	"github.com/apikit/apikit/billing/meter/metertest"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/usage/usagetest"
)

// UsageStore is packages usage's and billing/meter's durable state as
// package store keeps it: usage counts, quota alert claims and the meter
// event outbox. It is optional: [Run] tests it (with usagetest and
// metertest) when the backend implements it.
type UsageStore interface {
	usagetest.Backend
	metertest.Backend
}

var _ UsageStore = (*store.Store)(nil)

func testUsage(t *testing.T, newBackend func(t *testing.T) Backend) {
	usageStore := func(t *testing.T) UsageStore {
		b := newBackend(t)
		u, ok := b.(UsageStore)
		if !ok {
			t.Skip("the backend does not implement storetest.UsageStore")
		}
		return u
	}
	t.Run("Counts", func(t *testing.T) {
		usagetest.Run(t, func(t *testing.T) usagetest.Backend { return usageStore(t) })
	})
	t.Run("MeterOutbox", func(t *testing.T) {
		metertest.Run(t, func(t *testing.T) metertest.Backend { return usageStore(t) })
	})
}
