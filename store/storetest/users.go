package storetest

import (
	"github.com/apikit/apikit/internal/testkit/conformance"
	"testing"
)

func testUsers(t *testing.T, newBackend func(t *testing.T) Backend) {
	t.Run("CreateUserCreatesOnce", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		id, created, err := b.CreateUser(ctx, "ada@example.com", epoch)
		if err != nil || !created || id == 0 {
			t.Fatalf("first CreateUser = %d, %v, %v; want a new id", id, created, err)
		}
		again, created, err := b.CreateUser(ctx, "ada@example.com", epoch)
		if err != nil || created || again != id {
			t.Fatalf("second CreateUser = %d, %v, %v; want %d, false, nil", again, created, err, id)
		}
		other, _, err := b.CreateUser(ctx, "grace@example.com", epoch)
		if err != nil || other == id {
			t.Fatalf("CreateUser(other) = %d, %v; want a different id", other, err)
		}
	})

	t.Run("EmailIsCaseInsensitive", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		id := mustUser(t, b, "Ada.Lovelace@Example.COM")
		for _, email := range []string{"ada.lovelace@example.com", "ADA.LOVELACE@EXAMPLE.COM"} {
			got, created, err := b.CreateUser(ctx, email, epoch)
			if err != nil || created || got != id {
				t.Errorf("CreateUser(%q) = %d, %v, %v; want %d, false, nil", email, got, created, err, id)
			}
			got, found, err := b.UserByEmail(ctx, email)
			if err != nil || !found || got != id {
				t.Errorf("UserByEmail(%q) = %d, %v, %v; want %d, true, nil", email, got, found, err, id)
			}
		}
		email, found, err := b.UserEmail(ctx, id)
		if err != nil || !found || email != "ada.lovelace@example.com" {
			t.Errorf("UserEmail = %q, %v, %v; want the lowercased address", email, found, err)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		if id, found, err := b.UserByEmail(ctx, "nobody@example.com"); err != nil || found || id != 0 {
			t.Errorf("UserByEmail(unknown) = %d, %v, %v; want 0, false, nil", id, found, err)
		}
		if email, found, err := b.UserEmail(ctx, 424242); err != nil || found || email != "" {
			t.Errorf("UserEmail(unknown) = %q, %v, %v; want \"\", false, nil", email, found, err)
		}
	})

	t.Run("ConcurrentCreateUserCreatesOne", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		const n = 20
		ids := make([]int64, n)
		created := make([]bool, n)
		errs := make([]error, n)
		conformance.Together(n, func(i int) { ids[i], created[i], errs[i] = b.CreateUser(ctx, "race@example.com", epoch) })
		creations := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("CreateUser #%d: %v", i, errs[i])
			}
			if ids[i] != ids[0] {
				t.Fatalf("CreateUser returned ids %d and %d for one email", ids[0], ids[i])
			}
			if created[i] {
				creations++
			}
		}
		if creations != 1 {
			t.Errorf("%d calls reported creating the user; want exactly 1", creations)
		}
	})
}
