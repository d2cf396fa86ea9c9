// Package storetest is the conformance suite for apikit stores. Every
// backend in this module runs it, and so can a store of your own: the suite
// is what the Store interfaces of packages apikey, magiclink and billing
// mean, written as tests.
//
// The function passed to [Run] returns a fresh, migrated, empty store for
// each test. store/sqlite's own conformance test is this:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Backend {
//			st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "conformance.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { st.Close() })
//			if _, err := st.Migrate(t.Context()); err != nil {
//				t.Fatal(err)
//			}
//			return st
//		})
//	}
package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/internal/testkit/conformance"
)

// Users is the account part of a store, shared by the Store interfaces of
// packages apikey, magiclink and billing (which declare the methods they
// need with these signatures).
type Users interface {
	// CreateUser returns the id of the user with the email (compared
	// case-insensitively), creating the user at the given time if needed;
	// created tells which. Concurrent calls for one email create one user.
	CreateUser(ctx context.Context, email string, at time.Time) (id int64, created bool, err error)
	// UserByEmail finds a user by email, case-insensitively.
	UserByEmail(ctx context.Context, email string) (id int64, found bool, err error)
	// UserEmail returns a user's email address, lowercased.
	UserEmail(ctx context.Context, id int64) (email string, found bool, err error)
}

// Backend is everything an apikit store must implement. Run also tests the
// optional interfaces a backend implements: [UserDirectory],
// magiclink.EmailChangeStore, [PlanStore], [UsageStore],
// [PricedSubscriptions], [KeyLifecycleStore] and audit.Store.
type Backend interface {
	Users
	apikey.Store
	MagicLinkStore
	BillingStore
}

// Run runs the conformance suite. newBackend must return a fresh, migrated,
// empty store each time it is called, and arrange its cleanup with
// t.Cleanup; Run calls it once per subtest.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	t.Run("Users", func(t *testing.T) { testUsers(t, newBackend) })
	t.Run("APIKeys", func(t *testing.T) { testAPIKeys(t, newBackend) })
	t.Run("MagicLink", func(t *testing.T) { testMagicLink(t, newBackend) })
	t.Run("Billing", func(t *testing.T) { testBilling(t, newBackend) })
	t.Run("UserDirectory", func(t *testing.T) { testUserDirectory(t, newBackend) })
	t.Run("EmailChange", func(t *testing.T) { testEmailChange(t, newBackend) })
	t.Run("LoginCode", func(t *testing.T) { testLoginCode(t, newBackend) })
	t.Run("SessionDetails", func(t *testing.T) { testSessionDetails(t, newBackend) })
	t.Run("Plans", func(t *testing.T) { testPlans(t, newBackend) })
	t.Run("Usage", func(t *testing.T) { testUsage(t, newBackend) })
	t.Run("KeyLifecycle", func(t *testing.T) { testKeyLifecycle(t, newBackend) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, newBackend) })
}

// epoch is a fixed instant, microsecond-aligned, that tests build times from.
var epoch = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

// implements returns b as a T, the optional interface a part of the
// suite tests, and skips that part when the backend does not implement
// it. This module's store implements every one, and compile-time checks
// (var _ T = (*store.Store)(nil), here and in package store) keep it so:
// no part is skipped for it.
func implements[T any](t *testing.T, b Backend) T {
	t.Helper()
	v, ok := b.(T)
	if !ok {
		t.Skipf("the backend does not implement %v", reflect.TypeFor[T]())
	}
	return v
}

func mustUser(t *testing.T, b Backend, email string) int64 {
	t.Helper()
	id, _, err := b.CreateUser(conformance.Context(t), email, epoch)
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", email, err)
	}
	return id
}
