package apikey_test

import (
	"context"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
)

// ShortenTTL serves cached keys for FallbackTTL; after RestoreTTL, keys
// read before it keep the short TTL and keys read afterwards get CacheTTL.
// A key revoked in the store behind the Verifier's back (as by another
// instance whose message was lost) is refused within FallbackTTL.
func TestShortenAndRestoreTTL(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{CacheTTL: 30 * time.Second, FallbackTTL: time.Second})
	ctx := context.Background()
	k, token := f.issue(t, apikey.IssueOptions{})
	lookups := func() int64 { return f.fs.lookups.Load() }
	verify := func() error { _, err := f.v.Verify(ctx, token); return err }

	if err := verify(); err != nil {
		t.Fatal(err)
	}
	f.v.ShortenTTL()
	f.clock.Advance(500 * time.Millisecond)
	n := lookups()
	if err := verify(); err != nil || lookups() != n {
		t.Fatalf("within FallbackTTL: %v, %d lookups, want a cache hit", err, lookups()-n)
	}
	// Revoked elsewhere: this Verifier is not told.
	if _, err := f.st.RevokeKey(ctx, k.ID, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(600 * time.Millisecond)
	if err := verify(); err == nil {
		t.Fatal("a key revoked elsewhere still accepted 1.1 s later while the TTL is short")
	}

	// A key read while degraded keeps the short TTL after RestoreTTL;
	// one read afterwards is cached for CacheTTL.
	_, before := f.issue(t, apikey.IssueOptions{})
	if _, err := f.v.Verify(ctx, before); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Millisecond)
	f.v.RestoreTTL()
	_, after := f.issue(t, apikey.IssueOptions{})
	if _, err := f.v.Verify(ctx, after); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Second)
	n = lookups()
	if _, err := f.v.Verify(ctx, after); err != nil || lookups() != n {
		t.Errorf("key read after RestoreTTL, 5 s later: %v, %d lookups, want a cache hit", err, lookups()-n)
	}
	if _, err := f.v.Verify(ctx, before); err != nil || lookups() != n+1 {
		t.Errorf("key read before RestoreTTL, 5 s later: %v, %d lookups, want one (FallbackTTL)", err, lookups()-n)
	}
}

// InvalidateUser drops only that user's keys; InvalidateAll drops all.
func TestInvalidateUserAndAll(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{})
	ctx := context.Background()
	_, token := f.issue(t, apikey.IssueOptions{})
	if _, err := f.v.Verify(ctx, token); err != nil {
		t.Fatal(err)
	}
	n := f.fs.lookups.Load()
	f.v.InvalidateUser(f.userID + 1)
	f.v.Verify(ctx, token)
	if f.fs.lookups.Load() != n {
		t.Error("InvalidateUser of another user dropped this user's key")
	}
	f.v.InvalidateUser(f.userID)
	f.v.Verify(ctx, token)
	if f.fs.lookups.Load() != n+1 {
		t.Error("InvalidateUser did not drop the user's key")
	}
	f.v.InvalidateAll()
	f.v.Verify(ctx, token)
	if f.fs.lookups.Load() != n+2 {
		t.Error("InvalidateAll did not drop the key")
	}
}

// OnChange is called with the key's id after each change.
func TestManagerOnChange(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{})
	var got []string
	m := apikey.NewManager(f.fs, apikey.ManagerOptions{Prefix: "fav_test", OnChange: func(id string) { got = append(got, id) }})
	k, _ := f.issue(t, apikey.IssueOptions{})
	ctx := context.Background()
	if _, _, err := m.Roll(ctx, k.ID, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != k.ID || got[1] != k.ID {
		t.Errorf("OnChange got %v, want the key id twice (roll, revoke)", got)
	}
}
