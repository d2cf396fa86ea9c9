package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/conformance"
	"github.com/apikit/apikit/magiclink"
)

func testEmailChange(t *testing.T, newBackend func(t *testing.T) Backend) {
	setup := func(t *testing.T) (Backend, magiclink.EmailChangeStore, int64) {
		b := newBackend(t)
		ec := implements[magiclink.EmailChangeStore](t, b)
		return b, ec, mustUser(t, b, "old@example.com")
	}
	create := func(t *testing.T, ec magiclink.EmailChangeStore, name string, uid int64, email string, created time.Time) {
		t.Helper()
		if err := ec.CreateEmailChange(conformance.Context(t), magiclink.EmailChange{Hash: mlHash(name), UserID: uid, NewEmail: email,
			CreatedAt: created, ExpiresAt: created.Add(time.Hour)}); err != nil {
			t.Fatalf("CreateEmailChange(%s): %v", name, err)
		}
	}

	t.Run("ConsumeChangesTheAddress", func(t *testing.T) {
		b, ec, uid := setup(t)
		ctx := conformance.Context(t)
		create(t, ec, "c1", uid, "new@example.com", epoch)
		mustSession(t, b, "before", uid, epoch, 24*time.Hour)
		if email, _, _ := b.UserEmail(ctx, uid); email != "old@example.com" {
			t.Fatalf("UserEmail before the change is spent = %q; want the old address", email)
		}
		now := epoch.Add(time.Minute)
		id, old, nw, ok, err := ec.ConsumeEmailChange(ctx, mlHash("c1"), now)
		if err != nil || !ok || id != uid || old != "old@example.com" || nw != "new@example.com" {
			t.Fatalf("ConsumeEmailChange = %d, %q, %q, %v, %v; want %d, old, new, true, nil", id, old, nw, ok, err, uid)
		}
		if email, _, _ := b.UserEmail(ctx, uid); email != "new@example.com" {
			t.Errorf("UserEmail after the change = %q; want the new address", email)
		}
		if _, found, err := b.UserByEmail(ctx, "old@example.com"); err != nil || found {
			t.Errorf("UserByEmail(old address) = %v, %v; want false, nil: the old address still finds an account", found, err)
		}
		// Whoever proved the old address started the sessions; the new
		// address may belong to someone else, who must not find them open.
		if hasSession(t, b, "before") {
			t.Error("a session from before the change survived it")
		}
		if d, ok := b.(UserDirectory); ok {
			if u, _, _ := d.User(ctx, uid); !u.VerifiedAt.Equal(now) {
				t.Errorf("VerifiedAt = %v; want %v: the new address proved itself", u.VerifiedAt, now)
			}
		}
		if _, _, _, ok, err := ec.ConsumeEmailChange(ctx, mlHash("c1"), now); err != nil || ok {
			t.Errorf("second ConsumeEmailChange = %v, %v; want false, nil", ok, err)
		}
	})

	t.Run("UnknownAndExpired", func(t *testing.T) {
		_, ec, uid := setup(t)
		ctx := conformance.Context(t)
		if _, _, _, ok, err := ec.ConsumeEmailChange(ctx, mlHash("nothing"), epoch); err != nil || ok {
			t.Errorf("ConsumeEmailChange(unknown) = %v, %v; want false, nil", ok, err)
		}
		create(t, ec, "c1", uid, "new@example.com", epoch)
		if _, _, _, ok, err := ec.ConsumeEmailChange(ctx, mlHash("c1"), epoch.Add(time.Hour)); err != nil || ok {
			t.Errorf("ConsumeEmailChange at expiry = %v, %v; want false, nil", ok, err)
		}
	})

	t.Run("NewerReplacesOlder", func(t *testing.T) {
		_, ec, uid := setup(t)
		ctx := conformance.Context(t)
		create(t, ec, "c1", uid, "first@example.com", epoch)
		create(t, ec, "c2", uid, "second@example.com", epoch.Add(time.Second))
		if _, _, _, ok, err := ec.ConsumeEmailChange(ctx, mlHash("c1"), epoch.Add(time.Minute)); err != nil || ok {
			t.Errorf("ConsumeEmailChange(older) = %v, %v; want false, nil: a newer change replaced it", ok, err)
		}
		if _, _, nw, ok, err := ec.ConsumeEmailChange(ctx, mlHash("c2"), epoch.Add(time.Minute)); err != nil || !ok || nw != "second@example.com" {
			t.Errorf("ConsumeEmailChange(newer) = %q, %v, %v; want second@, true, nil", nw, ok, err)
		}
	})

	t.Run("TakenAddressSpendsTheToken", func(t *testing.T) {
		b, ec, uid := setup(t)
		ctx := conformance.Context(t)
		create(t, ec, "c1", uid, "taken@example.com", epoch)
		mustUser(t, b, "Taken@Example.com") // registered after the change was asked for
		_, _, _, ok, err := ec.ConsumeEmailChange(ctx, mlHash("c1"), epoch.Add(time.Minute))
		if ok || !errors.Is(err, magiclink.ErrEmailTaken) {
			t.Fatalf("ConsumeEmailChange to a taken address = %v, %v; want false and ErrEmailTaken", ok, err)
		}
		if email, _, _ := b.UserEmail(ctx, uid); email != "old@example.com" {
			t.Errorf("UserEmail = %q; want the old address unchanged", email)
		}
		if _, _, _, ok, err := ec.ConsumeEmailChange(ctx, mlHash("c1"), epoch.Add(time.Minute)); err != nil || ok {
			t.Errorf("ConsumeEmailChange again = %v, %v; want false, nil: the token is spent", ok, err)
		}
	})

	t.Run("ConcurrentConsumeOnce", func(t *testing.T) {
		_, ec, uid := setup(t)
		ctx := conformance.Context(t)
		create(t, ec, "c1", uid, "new@example.com", epoch)
		wins := conformance.Winners(t, 10, func(int) (bool, error) {
			_, _, _, ok, err := ec.ConsumeEmailChange(ctx, mlHash("c1"), epoch.Add(time.Minute))
			return ok, err
		})
		if wins != 1 {
			t.Errorf("%d concurrent ConsumeEmailChange calls reported ok; want exactly 1", wins)
		}
	})
}
