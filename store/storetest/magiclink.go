package storetest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/conformance"
	"github.com/apikit/apikit/magiclink"
)

// MagicLinkStore is the login-token and session part of a store, as package
// magiclink declares it.
type MagicLinkStore interface {
	magiclink.Store
}

// mlHash returns a distinct 32-byte hash for a test token or session name.
func mlHash(name string) []byte {
	h := sha256.Sum256([]byte(name))
	return h[:]
}

func mustLoginToken(t *testing.T, b Backend, name string, email string, created time.Time, ttl time.Duration) {
	t.Helper()
	if err := b.CreateLoginToken(conformance.Context(t), magiclink.LoginToken{
		Hash: mlHash(name), Email: email, CreatedAt: created, ExpiresAt: created.Add(ttl),
	}); err != nil {
		t.Fatalf("CreateLoginToken(%s): %v", name, err)
	}
}

func mustSession(t *testing.T, b Backend, name string, userID int64, created time.Time, ttl time.Duration) magiclink.Session {
	t.Helper()
	s := magiclink.Session{Hash: mlHash(name), UserID: userID, CreatedAt: created, ExpiresAt: created.Add(ttl), LastSeenAt: created}
	if err := b.CreateSession(conformance.Context(t), s); err != nil {
		t.Fatalf("CreateSession(%s): %v", name, err)
	}
	return s
}

func hasSession(t *testing.T, b Backend, name string) bool {
	t.Helper()
	_, found, err := b.Session(conformance.Context(t), mlHash(name))
	if err != nil {
		t.Fatalf("Session(%s): %v", name, err)
	}
	return found
}

func testMagicLink(t *testing.T, newBackend func(t *testing.T) Backend) {
	t.Run("ConsumeOnce", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		// A token names an address, and the address is stored normalised;
		// no account is needed to hold one.
		mustLoginToken(t, b, "t1", "Ada@Example.com", epoch, 15*time.Minute)
		got, ok, err := b.ConsumeLoginToken(ctx, mlHash("t1"), epoch.Add(time.Minute))
		if err != nil || !ok || got != "ada@example.com" {
			t.Fatalf("first ConsumeLoginToken = %q, %v, %v; want ada@example.com, true, nil", got, ok, err)
		}
		if got, ok, err := b.ConsumeLoginToken(ctx, mlHash("t1"), epoch.Add(2*time.Minute)); err != nil || ok || got != "" {
			t.Errorf("second ConsumeLoginToken = %q, %v, %v; want \"\", false, nil (used)", got, ok, err)
		}
		if id, found, err := b.UserByEmail(ctx, "ada@example.com"); err != nil || found {
			t.Errorf("UserByEmail after a token = %d, %v, %v; want no account: tokens create none", id, found, err)
		}
	})

	t.Run("ConsumeUnknown", func(t *testing.T) {
		b := newBackend(t)
		if got, ok, err := b.ConsumeLoginToken(conformance.Context(t), mlHash("nope"), epoch); err != nil || ok || got != "" {
			t.Errorf("ConsumeLoginToken(unknown) = %q, %v, %v; want \"\", false, nil", got, ok, err)
		}
	})

	t.Run("ConsumeExpired", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		mustLoginToken(t, b, "t1", "ada@example.com", epoch, 15*time.Minute)
		// Expiry is exclusive: at ExpiresAt the token no longer works.
		if _, ok, err := b.ConsumeLoginToken(ctx, mlHash("t1"), epoch.Add(15*time.Minute)); err != nil || ok {
			t.Errorf("ConsumeLoginToken at expiry = %v, %v; want false, nil", ok, err)
		}
		if _, ok, err := b.ConsumeLoginToken(ctx, mlHash("t1"), epoch.Add(15*time.Minute-time.Microsecond)); err != nil || !ok {
			t.Errorf("ConsumeLoginToken 1µs before expiry = %v, %v; want true, nil", ok, err)
		}
	})

	t.Run("NewTokenInvalidatesEarlierOnes", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		ada, grace := "ada@example.com", "grace@example.com"
		mustLoginToken(t, b, "ada1", ada, epoch, 15*time.Minute)
		mustLoginToken(t, b, "grace1", grace, epoch, 15*time.Minute)
		mustLoginToken(t, b, "ada2", "ADA@example.com", epoch.Add(time.Minute), 15*time.Minute)
		now := epoch.Add(2 * time.Minute)
		if _, ok, err := b.ConsumeLoginToken(ctx, mlHash("ada1"), now); err != nil || ok {
			t.Errorf("ConsumeLoginToken(earlier token) = %v, %v; want false: a newer token replaced it", ok, err)
		}
		if got, ok, err := b.ConsumeLoginToken(ctx, mlHash("ada2"), now); err != nil || !ok || got != ada {
			t.Errorf("ConsumeLoginToken(newest token) = %q, %v, %v; want %q", got, ok, err, ada)
		}
		if got, ok, err := b.ConsumeLoginToken(ctx, mlHash("grace1"), now); err != nil || !ok || got != grace {
			t.Errorf("another address's token = %q, %v, %v; want it untouched", got, ok, err)
		}
	})

	t.Run("DuplicateTokenHash", func(t *testing.T) {
		b := newBackend(t)
		mustLoginToken(t, b, "t1", "ada@example.com", epoch, time.Minute)
		err := b.CreateLoginToken(conformance.Context(t), magiclink.LoginToken{Hash: mlHash("t1"), Email: "grace@example.com", CreatedAt: epoch, ExpiresAt: epoch.Add(time.Minute)})
		if err == nil {
			t.Error("CreateLoginToken with an existing hash succeeded; want an error")
		}
	})

	t.Run("ConcurrentConsumeSucceedsOnce", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		const ada = "ada@example.com"
		mustLoginToken(t, b, "race", ada, epoch, 15*time.Minute)
		const n = 100
		got := conformance.Winners(t, n, func(int) (bool, error) {
			email, ok, err := b.ConsumeLoginToken(ctx, mlHash("race"), epoch.Add(time.Minute))
			if ok && email != ada {
				return ok, fmt.Errorf("consumed for %q, want %q", email, ada)
			}
			return ok, err
		})
		if got != 1 {
			t.Errorf("%d of %d concurrent redemptions succeeded; want exactly 1", got, n)
		}
	})

	t.Run("SessionRoundTrip", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		ada := mustUser(t, b, "Ada@Example.com")
		want := mustSession(t, b, "s1", ada, epoch, 10*24*time.Hour)
		got, found, err := b.Session(ctx, mlHash("s1"))
		if err != nil || !found {
			t.Fatalf("Session = found %v, %v; want the session", found, err)
		}
		if !bytes.Equal(got.Hash, want.Hash) || got.UserID != ada || got.Email != "ada@example.com" {
			t.Errorf("Session = hash %x user %d email %q; want %x %d %q", got.Hash, got.UserID, got.Email, want.Hash, ada, "ada@example.com")
		}
		for _, c := range []struct {
			name      string
			got, want time.Time
		}{{"CreatedAt", got.CreatedAt, want.CreatedAt}, {"ExpiresAt", got.ExpiresAt, want.ExpiresAt}, {"LastSeenAt", got.LastSeenAt, want.LastSeenAt}} {
			if !c.got.Equal(c.want) || c.got.Location() != time.UTC {
				t.Errorf("Session.%s = %v, want %v in UTC", c.name, c.got, c.want)
			}
		}
		if _, found, err := b.Session(ctx, mlHash("unknown")); err != nil || found {
			t.Errorf("Session(unknown) = found %v, %v; want false, nil", found, err)
		}
		err = b.CreateSession(ctx, want)
		if err == nil {
			t.Error("CreateSession with an existing hash succeeded; want an error")
		}
	})

	t.Run("ExpiredSessionIsStillReturned", func(t *testing.T) {
		b := newBackend(t)
		ada := mustUser(t, b, "ada@example.com")
		mustSession(t, b, "old", ada, epoch.Add(-48*time.Hour), time.Hour)
		if !hasSession(t, b, "old") {
			t.Error("Session(expired) not found; the store returns it and the caller checks expiry")
		}
	})

	t.Run("TouchSession", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		ada := mustUser(t, b, "ada@example.com")
		s := mustSession(t, b, "s1", ada, epoch, 24*time.Hour)
		later := epoch.Add(time.Hour)
		if err := b.TouchSession(ctx, mlHash("s1"), later); err != nil {
			t.Fatal(err)
		}
		// An older time never moves LastSeenAt back.
		if err := b.TouchSession(ctx, mlHash("s1"), epoch.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		got, _, err := b.Session(ctx, mlHash("s1"))
		if err != nil {
			t.Fatal(err)
		}
		if !got.LastSeenAt.Equal(later) {
			t.Errorf("LastSeenAt = %v, want %v", got.LastSeenAt, later)
		}
		if !got.ExpiresAt.Equal(s.ExpiresAt) {
			t.Errorf("TouchSession moved ExpiresAt from %v to %v; expiry is absolute", s.ExpiresAt, got.ExpiresAt)
		}
		if err := b.TouchSession(ctx, mlHash("unknown"), later); err != nil {
			t.Errorf("TouchSession(unknown) = %v; want nil", err)
		}
	})

	t.Run("DeleteSession", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		ada := mustUser(t, b, "ada@example.com")
		mustSession(t, b, "s1", ada, epoch, time.Hour)
		mustSession(t, b, "s2", ada, epoch, time.Hour)
		if found, err := b.DeleteSession(ctx, mlHash("s1")); err != nil || !found {
			t.Errorf("DeleteSession = %v, %v; want true, nil", found, err)
		}
		if found, err := b.DeleteSession(ctx, mlHash("s1")); err != nil || found {
			t.Errorf("DeleteSession again = %v, %v; want false, nil", found, err)
		}
		if hasSession(t, b, "s1") || !hasSession(t, b, "s2") {
			t.Error("DeleteSession deleted the wrong sessions")
		}
	})

	t.Run("DeleteUserSessions", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		ada := mustUser(t, b, "ada@example.com")
		grace := mustUser(t, b, "grace@example.com")
		for i := range 3 {
			mustSession(t, b, fmt.Sprint("ada", i), ada, epoch, time.Hour)
		}
		mustSession(t, b, "grace", grace, epoch, time.Hour)
		if n, err := b.DeleteUserSessions(ctx, ada); err != nil || n != 3 {
			t.Errorf("DeleteUserSessions = %d, %v; want 3, nil", n, err)
		}
		if hasSession(t, b, "ada0") || !hasSession(t, b, "grace") {
			t.Error("DeleteUserSessions deleted the wrong sessions")
		}
		if n, err := b.DeleteUserSessions(ctx, ada); err != nil || n != 0 {
			t.Errorf("DeleteUserSessions again = %d, %v; want 0, nil", n, err)
		}
	})

	t.Run("DeleteExpired", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		ada := mustUser(t, b, "ada@example.com")
		now := epoch.Add(time.Hour)
		mustLoginToken(t, b, "expired", "ada@example.com", epoch, time.Minute) // expired at now
		mustLoginToken(t, b, "used", "grace@example.com", now.Add(-time.Minute), 15*time.Minute)
		if _, ok, err := b.ConsumeLoginToken(ctx, mlHash("used"), now); err != nil || !ok {
			t.Fatalf("ConsumeLoginToken = %v, %v", ok, err)
		}
		mustLoginToken(t, b, "live", "hope@example.com", now, 15*time.Minute)
		mustSession(t, b, "gone", ada, epoch, time.Hour) // expires exactly at now
		mustSession(t, b, "live", ada, epoch, 2*time.Hour)
		n, err := b.DeleteExpired(ctx, now)
		if err != nil || n != 3 {
			t.Errorf("DeleteExpired = %d, %v; want 3 rows (expired token, used token, expired session)", n, err)
		}
		if hasSession(t, b, "gone") || !hasSession(t, b, "live") {
			t.Error("DeleteExpired deleted the wrong sessions")
		}
		if _, ok, err := b.ConsumeLoginToken(ctx, mlHash("live"), now); err != nil || !ok {
			t.Errorf("the live token after DeleteExpired = %v, %v; want it to work", ok, err)
		}
	})

	t.Run("ConfirmEmail", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		// Unknown address, create == false: nothing is created.
		if id, first, found, err := b.ConfirmEmail(ctx, "new@example.com", false, epoch); err != nil || found || first || id != 0 {
			t.Errorf("ConfirmEmail(unknown, no create) = %d, %v, %v, %v; want 0, false, false, nil", id, first, found, err)
		}
		if _, found, err := b.UserByEmail(ctx, "new@example.com"); err != nil || found {
			t.Fatalf("UserByEmail after ConfirmEmail without create = %v, %v; want false, nil", found, err)
		}
		// Unknown address, create: a new, proven account, first.
		id, first, found, err := b.ConfirmEmail(ctx, "New@Example.com", true, epoch)
		if err != nil || !found || !first || id == 0 {
			t.Fatalf("ConfirmEmail(unknown, create) = %d, %v, %v, %v; want a new id, first", id, first, found, err)
		}
		if got, _, _ := b.UserByEmail(ctx, "new@example.com"); got != id {
			t.Errorf("UserByEmail = %d; want %d", got, id)
		}
		// Again: the same account, not first.
		again, first, found, err := b.ConfirmEmail(ctx, "new@example.com", true, epoch.Add(time.Minute))
		if err != nil || !found || first || again != id {
			t.Errorf("second ConfirmEmail = %d, %v, %v, %v; want %d, not first", again, first, found, err, id)
		}
		// An account that exists but was never proven (a paid sign-up made
		// it): the first proof reports first, once.
		paid := mustUser(t, b, "paid@example.com")
		got, first, found, err := b.ConfirmEmail(ctx, "paid@example.com", false, epoch)
		if err != nil || !found || !first || got != paid {
			t.Errorf("ConfirmEmail(unproven account) = %d, %v, %v, %v; want %d, first", got, first, found, err, paid)
		}
		if _, first, _, err := b.ConfirmEmail(ctx, "paid@example.com", false, epoch); err != nil || first {
			t.Errorf("second ConfirmEmail(paid@example.com) = first %v, %v; want false, nil: first is reported once", first, err)
		}
	})

	t.Run("ConcurrentConfirmEmailFirstOnce", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		const n = 20
		var (
			wg     sync.WaitGroup
			firsts atomic.Int32
			ids    = make([]int64, n)
			errs   = make([]error, n)
			start  = make(chan struct{})
		)
		for i := range n {
			wg.Go(func() {
				<-start
				id, first, _, err := b.ConfirmEmail(ctx, "race@example.com", true, epoch)
				ids[i], errs[i] = id, err
				if first {
					firsts.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("ConfirmEmail #%d: %v", i, err)
			}
			if ids[i] != ids[0] {
				t.Fatalf("ConfirmEmail #%d returned account %d, #0 returned %d; want one account", i, ids[i], ids[0])
			}
		}
		if got := firsts.Load(); got != 1 {
			t.Errorf("%d of %d concurrent ConfirmEmail calls reported first; want exactly 1", got, n)
		}
	})
}
