package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/internal/testkit/conformance"
)

// newKey returns a complete key record for the user, with every optional
// field set, so that a round trip checks every column.
func newKey(userID int64, id string, created time.Time) apikey.Key {
	return apikey.Key{
		ID: id, UserID: userID, Name: "ci runner ✓", Prefix: "sk_test",
		SecretHash: bytes.Repeat([]byte{0xAB}, 32), Scopes: []string{"favorites:read", "favorites:write"},
		Active: true, CreatedAt: created, UpdatedAt: created, ExpiresAt: created.Add(90 * 24 * time.Hour),
	}
}

func keyID(n int) string { return fmt.Sprintf("K%011d", n) }

func mustCreateKey(t *testing.T, b Backend, k apikey.Key) {
	t.Helper()
	if err := b.CreateKey(conformance.Context(t), k, 0); err != nil {
		t.Fatalf("CreateKey(%s): %v", k.ID, err)
	}
}

func mustKey(t *testing.T, b Backend, id string) apikey.Key {
	t.Helper()
	k, found, err := b.Key(conformance.Context(t), id)
	if err != nil || !found {
		t.Fatalf("Key(%s) = found %v, err %v; want the key", id, found, err)
	}
	return k
}

// equalKeys compares records field by field, times with time.Equal.
func equalKeys(t *testing.T, got, want apikey.Key) {
	t.Helper()
	times := func(k apikey.Key) []time.Time {
		return []time.Time{k.PreviousExpiresAt, k.CreatedAt, k.UpdatedAt, k.LastUsedAt, k.ExpiresAt, k.RevokedAt}
	}
	gt, wt := times(got), times(want)
	for i := range gt {
		if !gt[i].Equal(wt[i]) {
			t.Errorf("key %s: time field %d = %v, want %v", want.ID, i, gt[i], wt[i])
		}
		if !gt[i].IsZero() && gt[i].Location() != time.UTC {
			t.Errorf("key %s: time field %d is in %v, want UTC", want.ID, i, gt[i].Location())
		}
	}
	strip := func(k apikey.Key) apikey.Key {
		k.PreviousExpiresAt, k.CreatedAt, k.UpdatedAt, k.LastUsedAt, k.ExpiresAt, k.RevokedAt =
			time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if len(k.PreviousSecretHash) == 0 {
			k.PreviousSecretHash = nil
		}
		if len(k.Scopes) == 0 {
			k.Scopes = nil
		}
		return k
	}
	if g, w := strip(got), strip(want); !reflect.DeepEqual(g, w) {
		t.Errorf("key round trip:\n got  %+v\n want %+v", g, w)
	}
}

func testAPIKeys(t *testing.T, newBackend func(t *testing.T) Backend) {
	t.Run("CreateAndRead", func(t *testing.T) {
		b := newBackend(t)
		k := newKey(mustUser(t, b, "ada@example.com"), keyID(1), epoch)
		mustCreateKey(t, b, k)
		equalKeys(t, mustKey(t, b, k.ID), k)

		bare := apikey.Key{ID: keyID(2), UserID: k.UserID, Prefix: "fav", SecretHash: []byte{1, 2, 3},
			CreatedAt: epoch, UpdatedAt: epoch}
		mustCreateKey(t, b, bare)
		equalKeys(t, mustKey(t, b, bare.ID), bare)
	})

	t.Run("UnknownKeyIsNotAnError", func(t *testing.T) {
		b := newBackend(t)
		k, found, err := b.Key(conformance.Context(t), keyID(99))
		if err != nil || found || k.ID != "" {
			t.Errorf("Key(unknown) = %+v, %v, %v; want zero, false, nil", k, found, err)
		}
	})

	t.Run("DuplicateIDIsAnError", func(t *testing.T) {
		b := newBackend(t)
		k := newKey(mustUser(t, b, "ada@example.com"), keyID(1), epoch)
		mustCreateKey(t, b, k)
		k.SecretHash = []byte("other")
		if err := b.CreateKey(conformance.Context(t), k, 0); err == nil {
			t.Fatal("CreateKey with an existing id succeeded")
		}
		if got := mustKey(t, b, k.ID); bytes.Equal(got.SecretHash, []byte("other")) {
			t.Error("a failed CreateKey overwrote the existing key")
		}
	})

	t.Run("KeyNeedsAnExistingUser", func(t *testing.T) {
		b := newBackend(t)
		if err := b.CreateKey(conformance.Context(t), newKey(987654, keyID(1), epoch), 0); err == nil {
			t.Error("CreateKey for a user that does not exist succeeded")
		}
	})

	t.Run("KeysByUserNewestFirst", func(t *testing.T) {
		b := newBackend(t)
		ada, grace := mustUser(t, b, "ada@example.com"), mustUser(t, b, "grace@example.com")
		for i := range 3 {
			mustCreateKey(t, b, newKey(ada, keyID(i), epoch.Add(time.Duration(i)*time.Minute)))
		}
		mustCreateKey(t, b, newKey(grace, keyID(10), epoch))
		keys, err := b.KeysByUser(conformance.Context(t), ada)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, k := range keys {
			ids = append(ids, k.ID)
		}
		if want := []string{keyID(2), keyID(1), keyID(0)}; !slices.Equal(ids, want) {
			t.Errorf("KeysByUser = %v, want %v", ids, want)
		}
		if keys, err := b.KeysByUser(conformance.Context(t), 424242); err != nil || len(keys) != 0 {
			t.Errorf("KeysByUser(unknown) = %v, %v; want none", keys, err)
		}
	})

	t.Run("RevokeKey", func(t *testing.T) {
		b := newBackend(t)
		k := newKey(mustUser(t, b, "ada@example.com"), keyID(1), epoch)
		mustCreateKey(t, b, k)
		at := epoch.Add(time.Hour)
		if found, err := b.RevokeKey(conformance.Context(t), k.ID, at); err != nil || !found {
			t.Fatalf("RevokeKey = %v, %v", found, err)
		}
		got := mustKey(t, b, k.ID)
		if !got.RevokedAt.Equal(at) || !got.UpdatedAt.Equal(at) {
			t.Errorf("after RevokeKey: RevokedAt %v, UpdatedAt %v; want both %v", got.RevokedAt, got.UpdatedAt, at)
		}
		// Revoking again keeps the first revocation time.
		if found, err := b.RevokeKey(conformance.Context(t), k.ID, at.Add(time.Hour)); err != nil || !found {
			t.Fatalf("second RevokeKey = %v, %v; want found", found, err)
		}
		if got := mustKey(t, b, k.ID); !got.RevokedAt.Equal(at) || !got.UpdatedAt.Equal(at) {
			t.Errorf("second RevokeKey changed RevokedAt to %v, UpdatedAt to %v", got.RevokedAt, got.UpdatedAt)
		}
		if found, err := b.RevokeKey(conformance.Context(t), keyID(2), at); err != nil || found {
			t.Errorf("RevokeKey(unknown) = %v, %v; want false, nil", found, err)
		}
	})

	t.Run("RenameKey", func(t *testing.T) {
		b := newBackend(t)
		k := newKey(mustUser(t, b, "ada@example.com"), keyID(1), epoch)
		mustCreateKey(t, b, k)
		at := epoch.Add(time.Minute)
		if found, err := b.RenameKey(conformance.Context(t), k.ID, "deploy bot", at); err != nil || !found {
			t.Fatalf("RenameKey = %v, %v", found, err)
		}
		if got := mustKey(t, b, k.ID); got.Name != "deploy bot" || !got.UpdatedAt.Equal(at) || !bytes.Equal(got.SecretHash, k.SecretHash) {
			t.Errorf("after RenameKey: Name %q, UpdatedAt %v; want %q, %v and the secret untouched", got.Name, got.UpdatedAt, "deploy bot", at)
		}
		if found, err := b.RenameKey(conformance.Context(t), keyID(2), "x", at); err != nil || found {
			t.Errorf("RenameKey(unknown) = %v, %v; want false, nil", found, err)
		}
	})

	t.Run("SetKeyActive", func(t *testing.T) {
		b := newBackend(t)
		k := newKey(mustUser(t, b, "ada@example.com"), keyID(1), epoch)
		mustCreateKey(t, b, k)
		for i, active := range []bool{false, true, false} {
			at := epoch.Add(time.Duration(i+1) * time.Minute)
			if found, err := b.SetKeyActive(conformance.Context(t), k.ID, active, at); err != nil || !found {
				t.Fatalf("SetKeyActive(%v) = %v, %v", active, found, err)
			}
			if got := mustKey(t, b, k.ID); got.Active != active || !got.UpdatedAt.Equal(at) {
				t.Errorf("after SetKeyActive(%v): Active %v, UpdatedAt %v", active, got.Active, got.UpdatedAt)
			}
		}
		if found, err := b.SetKeyActive(conformance.Context(t), keyID(2), true, epoch); err != nil || found {
			t.Errorf("SetKeyActive(unknown) = %v, %v; want false, nil", found, err)
		}
	})

	t.Run("RollKey", func(t *testing.T) {
		b := newBackend(t)
		k := newKey(mustUser(t, b, "ada@example.com"), keyID(1), epoch)
		mustCreateKey(t, b, k)
		newHash, grace, at := []byte("new-hash"), epoch.Add(25*time.Hour), epoch.Add(time.Hour)
		if found, err := b.RollKey(conformance.Context(t), k.ID, newHash, grace, at); err != nil || !found {
			t.Fatalf("RollKey = %v, %v", found, err)
		}
		got := mustKey(t, b, k.ID)
		if !bytes.Equal(got.SecretHash, newHash) || !bytes.Equal(got.PreviousSecretHash, k.SecretHash) ||
			!got.PreviousExpiresAt.Equal(grace) || !got.UpdatedAt.Equal(at) {
			t.Errorf("after RollKey: %+v", got)
		}
		if found, err := b.RollKey(conformance.Context(t), keyID(2), newHash, grace, at); err != nil || found {
			t.Errorf("RollKey(unknown) = %v, %v; want false, nil", found, err)
		}
		if _, err := b.RevokeKey(conformance.Context(t), k.ID, at); err != nil {
			t.Fatal(err)
		}
		if found, err := b.RollKey(conformance.Context(t), k.ID, []byte("after-revoke"), grace, at); err != nil || found {
			t.Errorf("RollKey(revoked) = %v, %v; want false, nil", found, err)
		}
		if got := mustKey(t, b, k.ID); !bytes.Equal(got.SecretHash, newHash) {
			t.Error("RollKey changed a revoked key")
		}
	})

	t.Run("ConcurrentRollsChainUp", func(t *testing.T) {
		// Each roll is one check-and-set: after n concurrent rolls the
		// current hash is one of theirs and the previous hash is the one
		// it replaced — never a lost update that pairs a hash with itself.
		b := newBackend(t)
		k := newKey(mustUser(t, b, "ada@example.com"), keyID(1), epoch)
		mustCreateKey(t, b, k)
		const n = 10
		hashes := map[string]bool{string(k.SecretHash): true}
		errs := make(chan error, n)
		for i := range n {
			hashes[fmt.Sprintf("hash-%d", i)] = true
		}
		conformance.Together(n, func(i int) {
			h := fmt.Appendf(nil, "hash-%d", i)
			if found, err := b.RollKey(conformance.Context(t), k.ID, h, epoch.Add(time.Hour), epoch); err != nil || !found {
				errs <- fmt.Errorf("RollKey = %v, %v", found, err)
			}
		})
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got := mustKey(t, b, k.ID)
		if !hashes[string(got.SecretHash)] || !hashes[string(got.PreviousSecretHash)] ||
			bytes.Equal(got.SecretHash, got.PreviousSecretHash) || bytes.Equal(got.SecretHash, k.SecretHash) {
			t.Errorf("after %d concurrent rolls: current %q, previous %q", n, got.SecretHash, got.PreviousSecretHash)
		}
	})

	t.Run("TouchKeysKeepsTheLatest", func(t *testing.T) {
		b := newBackend(t)
		user := mustUser(t, b, "ada@example.com")
		k1, k2 := newKey(user, keyID(1), epoch), newKey(user, keyID(2), epoch)
		mustCreateKey(t, b, k1)
		mustCreateKey(t, b, k2)
		t1 := epoch.Add(time.Minute)
		err := b.TouchKeys(conformance.Context(t), map[string]time.Time{k1.ID: t1, k2.ID: t1, keyID(3): t1})
		if err != nil {
			t.Fatalf("TouchKeys (with an unknown id) = %v", err)
		}
		// An older time never moves LastUsedAt back.
		if err := b.TouchKeys(conformance.Context(t), map[string]time.Time{k1.ID: epoch, k2.ID: t1.Add(time.Second)}); err != nil {
			t.Fatal(err)
		}
		if got := mustKey(t, b, k1.ID); !got.LastUsedAt.Equal(t1) {
			t.Errorf("k1.LastUsedAt = %v, want %v", got.LastUsedAt, t1)
		}
		if got := mustKey(t, b, k2.ID); !got.LastUsedAt.Equal(t1.Add(time.Second)) {
			t.Errorf("k2.LastUsedAt = %v, want %v", got.LastUsedAt, t1.Add(time.Second))
		}
		if err := b.TouchKeys(conformance.Context(t), nil); err != nil {
			t.Errorf("TouchKeys(nil) = %v", err)
		}
	})

	t.Run("KeyCapHoldsUnderConcurrency", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		const limit, n = 50, 100
		ada := mustUser(t, b, "ada@example.com")
		grace := mustUser(t, b, "grace@example.com")
		mustCreateKey(t, b, newKey(ada, keyID(0), epoch)) // one held already, revoked ones count too
		if _, err := b.RevokeKey(ctx, keyID(0), epoch); err != nil {
			t.Fatal(err)
		}
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make([]error, n)
		)
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = b.CreateKey(ctx, newKey(ada, keyID(i+1), epoch), limit)
			})
		}
		close(start)
		wg.Wait()
		var created, refused int
		for i, err := range errs {
			switch {
			case err == nil:
				created++
			case errors.Is(err, apikey.ErrTooManyKeys):
				refused++
			default:
				t.Errorf("CreateKey #%d: %v; want nil or ErrTooManyKeys", i, err)
			}
		}
		keys, err := b.KeysByUser(ctx, ada)
		if err != nil {
			t.Fatal(err)
		}
		if created != limit-1 || refused != n-created || len(keys) != limit {
			t.Errorf("%d concurrent creates under a cap of %d (1 held): %d created, %d refused, %d stored; want %d, %d, %d",
				n, limit, created, refused, len(keys), limit-1, n-limit+1, limit)
		}
		// The cap is per user.
		if err := b.CreateKey(ctx, newKey(grace, keyID(1000), epoch), limit); err != nil {
			t.Errorf("CreateKey for another user = %v; want nil", err)
		}
	})
}
