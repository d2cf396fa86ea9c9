package storetest

import "testing"

// BillingStore is the subscription and webhook-event part of a store, as
// package billing declares it.
type BillingStore interface{}

func testBilling(t *testing.T, newBackend func(t *testing.T) Backend) {}
