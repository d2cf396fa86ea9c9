// Package apikeytest is the conformance suite of the optional store
// interfaces of package apikey — [apikey.AttributeStore],
// [apikey.NoticeStore] (with [apikey.NoticePruner]),
// [apikey.ExpiryStore] and [apikey.VerifyStore] — and has a [MemoryStore]
// that implements all but VerifyStore, for tests (so that a test store
// embedding it may override Key alone).
//
// The required [apikey.Store] is checked by store/storetest; a store that
// implements the optional interfaces runs this suite as well, the way
// store/storetest runs plan/plantest:
//
//	t.Run("APIKeyLifecycle", func(t *testing.T) {
//		apikeytest.Run(t, func(t *testing.T) apikeytest.Backend { return newBackend(t) })
//	})
//
// Each test function may also be called on its own, for a store that
// implements only some of the interfaces.
package apikeytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/internal/testkit/conformance"
)

// Users creates the users that keys belong to (most stores refuse a key
// of an unknown user). Its signature is that of store/storetest's Users.
type Users interface {
	CreateUser(ctx context.Context, email string, at time.Time) (id int64, created bool, err error)
}

// AttributeBackend is what [TestKeyAttributes] needs.
type AttributeBackend interface {
	Users
	apikey.AttributeStore
}

// NoticeBackend is what [TestNoticeStore] needs: claims are made for
// existing keys, as the apikey components make them.
type NoticeBackend interface {
	Users
	apikey.Store
	apikey.NoticeStore
}

// ExpiryBackend is what [TestExpiryStore] needs.
type ExpiryBackend interface {
	Users
	apikey.Store
	apikey.ExpiryStore
}

// VerifyBackend is what [TestVerifyStore] needs.
type VerifyBackend interface {
	Users
	apikey.AttributeStore
	apikey.VerifyStore
}

// Backend implements every optional interface; [Run] needs it.
type Backend interface {
	Users
	apikey.AttributeStore
	apikey.ExpiryStore
	apikey.NoticePruner
	apikey.VerifyStore
}

// Run runs every test of the suite. open must return a fresh, migrated,
// empty store each time it is called, and arrange its cleanup with
// t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	t.Run("KeyAttributes", func(t *testing.T) { TestKeyAttributes(t, func(t *testing.T) AttributeBackend { return open(t) }) })
	t.Run("NoticeStore", func(t *testing.T) { TestNoticeStore(t, func(t *testing.T) NoticeBackend { return open(t) }) })
	t.Run("NoticePruner", func(t *testing.T) { TestNoticePruner(t, func(t *testing.T) NoticeBackend { return open(t) }) })
	t.Run("ExpiryStore", func(t *testing.T) { TestExpiryStore(t, func(t *testing.T) ExpiryBackend { return open(t) }) })
	t.Run("VerifyStore", func(t *testing.T) { TestVerifyStore(t, func(t *testing.T) VerifyBackend { return open(t) }) })
}

// epoch is a microsecond-aligned instant the tests build times from.
var epoch = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

func mustUser(t *testing.T, s Users, email string) int64 {
	t.Helper()
	id, _, err := s.CreateUser(conformance.Context(t), email, epoch)
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return id
}

func keyID(n int) string { return fmt.Sprintf("L%011d", n) }

func newKey(userID int64, n int) apikey.Key {
	return apikey.Key{ID: keyID(n), UserID: userID, Prefix: "fav_live", SecretHash: bytes.Repeat([]byte{byte(n)}, 32),
		Active: true, CreatedAt: epoch, UpdatedAt: epoch}
}

func mustCreate(t *testing.T, s apikey.Store, k apikey.Key) {
	t.Helper()
	if err := s.CreateKey(conformance.Context(t), k, 0); err != nil {
		t.Fatalf("CreateKey(%s): %v", k.ID, err)
	}
}

// TestKeyAttributes checks that a store keeps a key's metadata, tags and
// networks: CreateKey stores them, Key and KeysByUser return them as
// given, and a key without them reads back without them.
func TestKeyAttributes(t *testing.T, open func(t *testing.T) AttributeBackend) {
	s := open(t)
	ctx := conformance.Context(t)
	user := mustUser(t, s, "ada@example.com")
	rich := newKey(user, 1)
	rich.Metadata = json.RawMessage(`{"customer":"acme","tier":"gold","n":[1,2]}`)
	rich.Tags = []string{"team:billing", "ci"}
	rich.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/48"),
		netip.MustParsePrefix("198.51.100.7/32")}
	bare := newKey(user, 2)
	bare.CreatedAt = epoch.Add(time.Minute)
	mustCreate(t, s, rich)
	mustCreate(t, s, bare)

	check := func(where string, got, want apikey.Key) {
		t.Helper()
		if !jsonEqual(got.Metadata, want.Metadata) {
			t.Errorf("%s: Metadata = %s, want %s", where, got.Metadata, want.Metadata)
		}
		if !slices.Equal(got.Tags, want.Tags) {
			t.Errorf("%s: Tags = %q, want %q (in order)", where, got.Tags, want.Tags)
		}
		if !slices.Equal(got.AllowedCIDRs, want.AllowedCIDRs) {
			t.Errorf("%s: AllowedCIDRs = %v, want %v (in order)", where, got.AllowedCIDRs, want.AllowedCIDRs)
		}
	}
	for _, want := range []apikey.Key{rich, bare} {
		got, found, err := s.Key(ctx, want.ID)
		if err != nil || !found {
			t.Fatalf("Key(%s) = found %v, %v", want.ID, found, err)
		}
		check("Key("+want.ID+")", got, want)
	}
	keys, err := s.KeysByUser(ctx, user)
	if err != nil || len(keys) != 2 {
		t.Fatalf("KeysByUser = %d keys, %v; want 2", len(keys), err)
	}
	check("KeysByUser[0]", keys[0], bare)
	check("KeysByUser[1]", keys[1], rich)
}

// jsonEqual compares two JSON documents by value; empty equals null.
func jsonEqual(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(bytes.TrimSpace(a)) == 0 && len(bytes.TrimSpace(b)) == 0 ||
			string(bytes.TrimSpace(a)) == "null" || string(bytes.TrimSpace(b)) == "null"
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return bytes.Equal(xs, ys)
}

// TestNoticeStore checks the claim contract of [apikey.NoticeStore]: one
// winner among concurrent claims, claims told apart by kind, key and due
// time (at microsecond precision), and release.
func TestNoticeStore(t *testing.T, open func(t *testing.T) NoticeBackend) {
	s := open(t)
	ctx := conformance.Context(t)
	user := mustUser(t, s, "ada@example.com")
	for i := 1; i <= 2; i++ {
		mustCreate(t, s, newKey(user, i))
	}
	due := epoch.Add(7 * 24 * time.Hour)
	c := apikey.NoticeClaim{Kind: apikey.NoticeExpiresSoon, KeyID: keyID(1), Due: due}
	claim := func(c apikey.NoticeClaim) bool {
		t.Helper()
		won, err := s.ClaimNotice(ctx, c, epoch)
		if err != nil {
			t.Fatalf("ClaimNotice(%+v): %v", c, err)
		}
		return won
	}

	if !claim(c) {
		t.Fatal("the first claim was not won")
	}
	if claim(c) {
		t.Error("a second claim of the same notice was won")
	}
	if claim(apikey.NoticeClaim{Kind: c.Kind, KeyID: c.KeyID, Due: due.Add(500 * time.Nanosecond)}) {
		t.Error("a claim whose due time differs below a microsecond was won: it is the same notice")
	}
	for _, other := range []apikey.NoticeClaim{
		{Kind: apikey.NoticeExpiresTomorrow, KeyID: c.KeyID, Due: due},
		{Kind: c.Kind, KeyID: keyID(2), Due: due},
		{Kind: c.Kind, KeyID: c.KeyID, Due: due.Add(time.Second)},
	} {
		if !claim(other) {
			t.Errorf("claim %+v lost to a different notice", other)
		}
	}

	if err := s.ReleaseNotice(ctx, c); err != nil {
		t.Fatalf("ReleaseNotice: %v", err)
	}
	if !claim(c) {
		t.Error("a released notice could not be claimed again")
	}
	if err := s.ReleaseNotice(ctx, apikey.NoticeClaim{Kind: apikey.NoticeLeaked, KeyID: keyID(2), Due: epoch}); err != nil {
		t.Errorf("ReleaseNotice of a claim never made = %v, want nil", err)
	}

	t.Run("Concurrent", func(t *testing.T) {
		leak := apikey.NoticeClaim{Kind: apikey.NoticeLeaked, KeyID: keyID(2), Due: epoch}
		if n := conformance.Winners(t, 16, func(int) (bool, error) { return s.ClaimNotice(ctx, leak, epoch) }); n != 1 {
			t.Errorf("16 concurrent claims: %d won, want exactly 1", n)
		}
	})
}

// TestNoticePruner checks [apikey.NoticePruner]: claims made before the
// given time are deleted (and can be claimed again), later ones kept.
func TestNoticePruner(t *testing.T, open func(t *testing.T) NoticeBackend) {
	s := open(t)
	p, ok := s.(apikey.NoticePruner)
	if !ok {
		t.Skip("the store does not implement apikey.NoticePruner")
	}
	ctx := conformance.Context(t)
	mustCreate(t, s, newKey(mustUser(t, s, "ada@example.com"), 1))
	old := apikey.NoticeClaim{Kind: apikey.NoticeExpired, KeyID: keyID(1), Due: epoch}
	recent := apikey.NoticeClaim{Kind: apikey.NoticeGraceEnded, KeyID: keyID(1), Due: epoch}
	for _, c := range []struct {
		c  apikey.NoticeClaim
		at time.Time
	}{{old, epoch}, {recent, epoch.Add(time.Hour)}} {
		if won, err := s.ClaimNotice(ctx, c.c, c.at); err != nil || !won {
			t.Fatalf("ClaimNotice = %v, %v", won, err)
		}
	}
	n, err := p.PruneNotices(ctx, epoch.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("PruneNotices = %d, %v; want 1, nil", n, err)
	}
	if won, err := s.ClaimNotice(ctx, old, epoch.Add(2*time.Hour)); err != nil || !won {
		t.Errorf("ClaimNotice(pruned) = %v, %v; want it claimed again", won, err)
	}
	if won, err := s.ClaimNotice(ctx, recent, epoch.Add(2*time.Hour)); err != nil || won {
		t.Errorf("ClaimNotice(kept) = %v, %v; want false: a claim made after the cut-off was kept", won, err)
	}
}

// TestExpiryStore checks the two window queries of [apikey.ExpiryStore]:
// bounds, order, paging from a position, the limit, and that revoked keys,
// keys without an expiry and keys never rolled are left out.
func TestExpiryStore(t *testing.T, open func(t *testing.T) ExpiryBackend) {
	s := open(t)
	ctx := conformance.Context(t)
	user := mustUser(t, s, "ada@example.com")
	h := time.Hour
	// Keys 1-5 expire at epoch+1h, +2h, +2h, +3h, +5h; 6 never; 7 is
	// revoked; 8-9 were rolled, their grace ending at +2h and +4h; 10 was
	// rolled and revoked.
	for i, exp := range map[int]time.Duration{1: h, 2: 2 * h, 3: 2 * h, 4: 3 * h, 5: 5 * h, 6: 0, 7: 2 * h} {
		k := newKey(user, i)
		if exp != 0 {
			k.ExpiresAt = epoch.Add(exp)
		}
		if i == 7 {
			k.RevokedAt = epoch
		}
		mustCreate(t, s, k)
	}
	for i, grace := range map[int]time.Duration{8: 2 * h, 9: 4 * h, 10: 2 * h} {
		mustCreate(t, s, newKey(user, i))
		if found, err := s.RollKey(ctx, keyID(i), []byte("new hash"), epoch.Add(grace), epoch); err != nil || !found {
			t.Fatalf("RollKey(%s) = %v, %v", keyID(i), found, err)
		}
	}
	if _, err := s.RevokeKey(ctx, keyID(10), epoch); err != nil {
		t.Fatal(err)
	}

	ids := func(keys []apikey.Key, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, k := range keys {
			out = append(out, k.ID)
		}
		return out
	}
	for _, tt := range []struct {
		name string
		got  []string
		want []int
	}{
		{"whole window", ids(s.KeysExpiring(ctx, epoch, "", epoch.Add(24*h), 100)), []int{1, 2, 3, 4, 5}},
		{"from is inclusive, to exclusive", ids(s.KeysExpiring(ctx, epoch.Add(2*h), "", epoch.Add(5*h), 100)), []int{2, 3, 4}},
		{"limit", ids(s.KeysExpiring(ctx, epoch, "", epoch.Add(24*h), 2)), []int{1, 2}},
		{"page after a tie", ids(s.KeysExpiring(ctx, epoch.Add(2*h), keyID(2), epoch.Add(24*h), 2)), []int{3, 4}},
		{"page after the last of a tie", ids(s.KeysExpiring(ctx, epoch.Add(2*h), keyID(3), epoch.Add(24*h), 100)), []int{4, 5}},
		{"empty window", ids(s.KeysExpiring(ctx, epoch.Add(6*h), "", epoch.Add(24*h), 100)), nil},
		{"grace", ids(s.KeysGraceEnding(ctx, epoch, "", epoch.Add(24*h), 100)), []int{8, 9}},
		{"grace bounds", ids(s.KeysGraceEnding(ctx, epoch.Add(3*h), "", epoch.Add(4*h+time.Microsecond), 100)), []int{9}},
		{"grace page", ids(s.KeysGraceEnding(ctx, epoch.Add(2*h), keyID(8), epoch.Add(24*h), 100)), []int{9}},
	} {
		want := []string{}
		for _, n := range tt.want {
			want = append(want, keyID(n))
		}
		if !slices.Equal(tt.got, want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, want)
		}
	}
	keys, err := s.KeysExpiring(ctx, epoch, "", epoch.Add(90*time.Minute), 10)
	if err != nil || len(keys) != 1 || !keys[0].ExpiresAt.Equal(epoch.Add(h)) || keys[0].UserID != user {
		t.Errorf("KeysExpiring returned %+v, %v; want key 1 complete", keys, err)
	}
}

// TestVerifyStore checks a store's KeyForVerify against its Key: for keys
// in every state a verifier tells apart (plain, with attributes, rolled
// within its grace period, revoked, expired, inactive, used), every field
// but CreatedAt, UpdatedAt and LastUsedAt is the same, and those three are
// either the same or zero. An unknown id is not found, without an error.
func TestVerifyStore(t *testing.T, open func(t *testing.T) VerifyBackend) {
	s := open(t)
	ctx := conformance.Context(t)
	user := mustUser(t, s, "ada@example.com")
	rich := newKey(user, 1)
	rich.Name, rich.Scopes = "CI", []string{"favorites:read", "favorites:write"}
	rich.Metadata = json.RawMessage(`{"customer":"acme"}`)
	rich.Tags = []string{"team:billing", "ci"}
	rich.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/48")}
	revoked, expired, inactive, rolled, used := newKey(user, 2), newKey(user, 3), newKey(user, 4), newKey(user, 5), newKey(user, 6)
	revoked.RevokedAt = epoch.Add(time.Hour)
	expired.ExpiresAt = epoch.Add(2 * time.Hour)
	inactive.Active = false
	for _, k := range []apikey.Key{rich, revoked, expired, inactive, rolled, used} {
		mustCreate(t, s, k)
	}
	if found, err := s.RollKey(ctx, rolled.ID, bytes.Repeat([]byte{0xee}, 32), epoch.Add(time.Hour), epoch.Add(time.Minute)); err != nil || !found {
		t.Fatalf("RollKey = %v, %v", found, err)
	}
	if err := s.TouchKeys(ctx, map[string]time.Time{used.ID: epoch.Add(3 * time.Minute)}); err != nil {
		t.Fatalf("TouchKeys: %v", err)
	}

	for _, k := range []apikey.Key{rich, revoked, expired, inactive, rolled, used} {
		want, found, err := s.Key(ctx, k.ID)
		if err != nil || !found {
			t.Fatalf("Key(%s) = found %v, %v", k.ID, found, err)
		}
		got, found, err := s.KeyForVerify(ctx, k.ID)
		if err != nil || !found {
			t.Fatalf("KeyForVerify(%s) = found %v, %v", k.ID, found, err)
		}
		for _, f := range []struct {
			name      string
			got, want *time.Time
		}{{"CreatedAt", &got.CreatedAt, &want.CreatedAt}, {"UpdatedAt", &got.UpdatedAt, &want.UpdatedAt},
			{"LastUsedAt", &got.LastUsedAt, &want.LastUsedAt}} {
			if !f.got.IsZero() && !f.got.Equal(*f.want) {
				t.Errorf("KeyForVerify(%s).%s = %v; want %v (as Key) or zero", k.ID, f.name, *f.got, *f.want)
			}
			*f.got, *f.want = time.Time{}, time.Time{}
		}
		if !jsonEqual(got.Metadata, want.Metadata) {
			t.Errorf("KeyForVerify(%s).Metadata = %s, want %s", k.ID, got.Metadata, want.Metadata)
		}
		got.Metadata, want.Metadata = nil, nil
		if gs, ws := fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", want); gs != ws {
			t.Errorf("KeyForVerify(%s) =\n%s\nwant (as Key, but the three timestamps)\n%s", k.ID, gs, ws)
		}
	}
	if _, found, err := s.KeyForVerify(ctx, keyID(99)); found || err != nil {
		t.Errorf("KeyForVerify(unknown) = found %v, %v; want false, nil", found, err)
	}
}
