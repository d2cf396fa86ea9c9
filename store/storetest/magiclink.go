package storetest

import "testing"

// MagicLinkStore is the login-token and session part of a store, as package
// magiclink declares it.
type MagicLinkStore interface{}

func testMagicLink(t *testing.T, newBackend func(t *testing.T) Backend) {}
