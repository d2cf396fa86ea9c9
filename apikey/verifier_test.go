package apikey_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
)

func TestVerify(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{})
	k, token := f.issue(t, apikey.IssueOptions{Name: "ci", Scopes: []string{"favorites:read"}})

	p, err := f.v.Verify(ctx, token)
	if err != nil {
		t.Fatalf("Verify(valid) = %v", err)
	}
	want := apikey.Principal{KeyID: k.ID, UserID: f.userID, Name: "ci", Prefix: "fav_test", Scopes: []string{"favorites:read"}}
	if p.KeyID != want.KeyID || p.UserID != want.UserID || p.Name != want.Name || p.Prefix != want.Prefix || !slices.Equal(p.Scopes, want.Scopes) {
		t.Errorf("Verify = %+v, want %+v", p, want)
	}

	other, _ := apikey.Generate("fav_test")
	wrongSecret, _ := apikey.Generate("fav_test")
	// Same id and prefix, another secret, valid checksum: a forgery.
	forged := "fav_test_" + k.ID + wrongSecret.Reveal()[len("fav_test_")+apikey.IDLen:]
	relabelled := "fav_live" + token[len("fav_test"):]
	typo := []byte(token) // one character changed, whatever it was
	typo[20] = 'x'
	if token[20] == 'x' {
		typo[20] = 'y'
	}
	for _, tc := range []struct {
		name, token string
		want        error
	}{
		{"Garbage", "hello", apikey.ErrMalformed},
		{"Typo", string(typo), apikey.ErrMalformed},
		{"UnknownID", other.Reveal(), apikey.ErrInvalid},
		{"WrongSecret", relabelWithChecksum(t, forged), apikey.ErrInvalid},
		// Changing the prefix needs a new checksum, which is public: the
		// stored prefix must still match.
		{"OtherPrefix", relabelWithChecksum(t, relabelled), apikey.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.v.Verify(ctx, tc.token); !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

// relabelWithChecksum fixes the checksum of a hand-edited token, as an
// attacker can: the checksum is public.
func relabelWithChecksum(t *testing.T, s string) string {
	t.Helper()
	body := s[:len(s)-apikey.CheckLen]
	return body + apikey.Checksum(body)
}

func TestVerifyStates(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{})

	_, revoked := f.issue(t, apikey.IssueOptions{})
	kr, _ := apikey.Parse(revoked)
	if err := f.m.Revoke(ctx, kr.ID); err != nil {
		t.Fatal(err)
	}
	_, inactive := f.issue(t, apikey.IssueOptions{})
	ki, _ := apikey.Parse(inactive)
	if err := f.m.Deactivate(ctx, ki.ID); err != nil {
		t.Fatal(err)
	}
	_, expiring := f.issue(t, apikey.IssueOptions{ExpiresAt: f.clock.Now().Add(time.Hour)})

	for _, tc := range []struct {
		name, token string
		want        error
	}{
		{"Revoked", revoked, apikey.ErrRevoked},
		{"Inactive", inactive, apikey.ErrInactive},
		{"NotYetExpired", expiring, nil},
	} {
		if _, err := f.v.Verify(ctx, tc.token); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}

	f.clock.Advance(time.Hour)
	if _, err := f.v.Verify(ctx, expiring); !errors.Is(err, apikey.ErrExpired) {
		t.Errorf("Verify(expired) = %v, want ErrExpired", err)
	}
	if err := f.m.Activate(ctx, ki.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(ctx, inactive); err != nil {
		t.Errorf("Verify(re-activated) = %v", err)
	}
	// Activation cannot bring back a revoked key.
	if err := f.m.Activate(ctx, kr.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(ctx, revoked); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("Verify(revoked, then activated) = %v, want ErrRevoked", err)
	}
	// Revealing a revoked key's state needs its secret.
	s := f.v.Stats()
	if s.Revoked != 2 || s.Inactive != 1 || s.Expired != 1 || s.Verified != 2 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestVerifyPrefixes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{Prefixes: []string{"fav_live"}})
	_, token := f.issue(t, apikey.IssueOptions{}) // a fav_test key
	if _, err := f.v.Verify(ctx, token); !errors.Is(err, apikey.ErrMalformed) {
		t.Errorf("Verify(test key on a live-only verifier) = %v, want ErrMalformed", err)
	}
	if n := f.fs.lookups.Load(); n != 0 {
		t.Errorf("a refused prefix cost %d store lookups, want 0", n)
	}
}

func TestRoll(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{})
	k, old := f.issue(t, apikey.IssueOptions{Name: "server"})

	rolled, tok, err := f.m.Roll(ctx, k.ID, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ID != k.ID || rolled.Name != "server" || tok.Reveal() == old {
		t.Errorf("Roll kept id %q name %q, new token differs: %v", tok.ID, rolled.Name, tok.Reveal() != old)
	}
	for name, token := range map[string]string{"old": old, "new": tok.Reveal()} {
		if _, err := f.v.Verify(ctx, token); err != nil {
			t.Errorf("within the grace period, Verify(%s) = %v", name, err)
		}
	}
	f.clock.Advance(24 * time.Hour)
	if _, err := f.v.Verify(ctx, old); !errors.Is(err, apikey.ErrInvalid) {
		t.Errorf("after the grace period, Verify(old) = %v, want ErrInvalid", err)
	}
	if _, err := f.v.Verify(ctx, tok.Reveal()); err != nil {
		t.Errorf("after the grace period, Verify(new) = %v", err)
	}

	// Without grace the old secret stops at once.
	_, tok2, err := f.m.Roll(ctx, k.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(ctx, tok.Reveal()); !errors.Is(err, apikey.ErrInvalid) {
		t.Errorf("after a roll without grace, Verify(previous) = %v, want ErrInvalid", err)
	}
	if _, err := f.v.Verify(ctx, tok2.Reveal()); err != nil {
		t.Errorf("Verify(rolled twice) = %v", err)
	}

	if err := f.m.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.m.Roll(ctx, k.ID, time.Hour); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("Roll(revoked) = %v, want ErrRevoked", err)
	}
	if _, _, err := f.m.Roll(ctx, "AAAAAAAAAAAA", time.Hour); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("Roll(unknown) = %v, want ErrNotFound", err)
	}
}

func TestManagerErrors(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{})
	for name, fn := range map[string]func(context.Context, string) error{
		"Revoke": f.m.Revoke, "Activate": f.m.Activate, "Deactivate": f.m.Deactivate,
		"Get": func(ctx context.Context, id string) error { _, err := f.m.Get(ctx, id); return err },
	} {
		if err := fn(ctx, "AAAAAAAAAAAA"); !errors.Is(err, apikey.ErrNotFound) {
			t.Errorf("%s(unknown) = %v, want ErrNotFound", name, err)
		}
	}
	for _, opts := range []apikey.IssueOptions{
		{Name: string(make([]byte, apikey.MaxNameLen+1))},
		{Name: "line\nbreak"},
		{Scopes: []string{"has space"}},
		{Scopes: []string{""}},
		{Prefix: "bad-prefix"},
		{ExpiresAt: f.clock.Now().Add(-time.Second)},
	} {
		if _, _, err := f.m.Issue(ctx, f.userID, opts); !errors.Is(err, apikey.ErrInvalidOptions) {
			t.Errorf("Issue(%+v) = %v, want ErrInvalidOptions", opts, err)
		}
	}
	if _, _, err := f.m.Issue(ctx, 999999, apikey.IssueOptions{}); err == nil {
		t.Error("Issue for an unknown user succeeded")
	}
}

func TestList(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{})
	var ids []string
	for range 3 {
		k, _ := f.issue(t, apikey.IssueOptions{})
		ids = append(ids, k.ID)
		f.clock.Advance(time.Second)
	}
	keys, err := f.m.List(ctx, f.userID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.ID)
		if len(k.SecretHash) == 0 {
			t.Error("List returned a key without its hash")
		}
	}
	slices.Reverse(ids)
	if !slices.Equal(got, ids) {
		t.Errorf("List = %v, want newest first %v", got, ids)
	}
}

func TestCache(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{CacheTTL: time.Minute, NegativeTTL: 10 * time.Second})
	_, token := f.issue(t, apikey.IssueOptions{})

	for range 100 {
		if _, err := f.v.Verify(ctx, token); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.fs.lookups.Load(); n != 1 {
		t.Errorf("100 verifications of one key made %d store lookups, want 1", n)
	}

	unknown, _ := apikey.Generate("fav_test")
	for range 100 {
		if _, err := f.v.Verify(ctx, unknown.Reveal()); !errors.Is(err, apikey.ErrInvalid) {
			t.Fatal(err)
		}
	}
	if n := f.fs.lookups.Load(); n != 2 {
		t.Errorf("100 verifications of one unknown id made %d store lookups, want 1", n-1)
	}
	f.clock.Advance(10 * time.Second)
	_, _ = f.v.Verify(ctx, unknown.Reveal())
	if n := f.fs.lookups.Load(); n != 3 {
		t.Errorf("after NegativeTTL the unknown id was not looked up again (%d lookups)", n)
	}
	f.clock.Advance(time.Minute)
	_, _ = f.v.Verify(ctx, token)
	if n := f.fs.lookups.Load(); n != 4 {
		t.Errorf("after CacheTTL the key was not looked up again (%d lookups)", n)
	}
	if s := f.v.Stats(); s.CachedKeys != 1 || s.CacheHits == 0 || s.Lookups != 4 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{CacheSize: 64})
	for range 300 {
		_, token := f.issue(t, apikey.IssueOptions{})
		if _, err := f.v.Verify(ctx, token); err != nil {
			t.Fatal(err)
		}
		unknown, _ := apikey.Generate("fav_test")
		_, _ = f.v.Verify(ctx, unknown.Reveal())
	}
	// Shards round the budget up; the bound is per shard.
	if s := f.v.Stats(); s.CachedKeys > 64+32 || s.CachedIDs > 64 {
		t.Errorf("cache holds %d keys and %d unknown ids; want at most about 64 and 16", s.CachedKeys, s.CachedIDs)
	}
}

func TestSingleFlight(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{})
	_, token := f.issue(t, apikey.IssueOptions{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := f.v.Verify(ctx, token); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// Concurrent misses share one query; a goroutine scheduled after the
	// first query finished hits the cache. Either way: one lookup.
	if n := f.fs.lookups.Load(); n != 1 {
		t.Errorf("50 concurrent verifications of a cold key made %d lookups, want 1", n)
	}
}

func TestStoreUnavailable(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{CacheTTL: time.Minute})
	_, warm := f.issue(t, apikey.IssueOptions{})
	_, cold := f.issue(t, apikey.IssueOptions{})
	if _, err := f.v.Verify(ctx, warm); err != nil {
		t.Fatal(err)
	}
	f.fs.down.Store(true)

	if _, err := f.v.Verify(ctx, warm); err != nil {
		t.Errorf("a key verified within the TTL stopped working while the store is down: %v", err)
	}
	_, err := f.v.Verify(ctx, cold)
	if !errors.Is(err, apikey.ErrUnavailable) || apikey.StatusCode(err) != 503 {
		t.Errorf("Verify(uncached) with the store down = %v (status %d), want ErrUnavailable, 503", err, apikey.StatusCode(err))
	}
	f.clock.Advance(time.Minute)
	if _, err := f.v.Verify(ctx, warm); !errors.Is(err, apikey.ErrUnavailable) {
		t.Errorf("past the TTL with the store down, Verify = %v, want ErrUnavailable", err)
	}
	f.fs.down.Store(false)
	if _, err := f.v.Verify(ctx, cold); err != nil {
		t.Errorf("after the store recovered, Verify = %v", err)
	}
}

func TestVerifyHonoursContext(t *testing.T) {
	f := newFixture(t, apikey.VerifierOptions{})
	_, token := f.issue(t, apikey.IssueOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.v.Verify(ctx, token); !errors.Is(err, context.Canceled) || !errors.Is(err, apikey.ErrUnavailable) {
		t.Errorf("Verify with a cancelled context = %v, want ErrUnavailable wrapping context.Canceled", err)
	}
}

func TestLastUsedIsBatched(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{TouchInterval: time.Hour})
	k, token := f.issue(t, apikey.IssueOptions{})
	used := f.clock.Now()
	for range 10 {
		if _, err := f.v.Verify(ctx, token); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := f.m.Get(ctx, k.ID); !got.LastUsedAt.IsZero() {
		t.Errorf("LastUsedAt written on the request path: %v", got.LastUsedAt)
	}
	f.fs.down.Store(true)
	if err := f.v.Flush(ctx); err == nil {
		t.Error("Flush with the store down succeeded")
	}
	f.fs.down.Store(false)
	if err := f.v.Close(); err != nil { // Close flushes what the failed Flush kept
		t.Fatal(err)
	}
	got, err := f.m.Get(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.LastUsedAt.Equal(used) {
		t.Errorf("after Close, LastUsedAt = %v, want %v", got.LastUsedAt, used)
	}
	if s := f.v.Stats(); s.TouchesWritten != 1 || s.TouchErrors != 1 {
		t.Errorf("Stats = %+v; want 1 touch written, 1 error", s)
	}
}

func TestConcurrentIssue(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{})
	const n = 50
	tokens := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, tok, err := f.m.Issue(ctx, f.userID, apikey.IssueOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			tokens[i] = tok.Reveal()
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, tok := range tokens {
		if seen[tok] {
			t.Fatalf("token issued twice: %s", tok[:22])
		}
		seen[tok] = true
		if _, err := f.v.Verify(ctx, tok); err != nil {
			t.Errorf("issued key does not verify: %v", err)
		}
	}
	if keys, _ := f.m.List(ctx, f.userID); len(keys) != n {
		t.Errorf("List has %d keys, want %d", len(keys), n)
	}
}

// TestRevokeIsImmediate verifies a key from many goroutines while it is
// revoked: every verification that starts after Revoke returned must fail,
// even if it joins a store query that began before the revocation.
func TestRevokeIsImmediate(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		f := newFixture(t, apikey.VerifierOptions{})
		k, token := f.issue(t, apikey.IssueOptions{})
		var revoked atomic.Bool
		var leaked atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					after := revoked.Load()
					if round%2 == 0 {
						f.v.Invalidate(k.ID) // force store queries racing the revocation
					}
					_, err := f.v.Verify(ctx, token)
					if after && err == nil {
						leaked.Add(1)
					}
				}
			})
		}
		time.Sleep(5 * time.Millisecond)
		if err := f.m.Revoke(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		revoked.Store(true)
		time.Sleep(5 * time.Millisecond)
		close(stop)
		wg.Wait()
		if n := leaked.Load(); n > 0 {
			t.Fatalf("round %d: %d verifications that started after Revoke returned accepted the key", round, n)
		}
	}
}

// TestRolledElsewhere rolls a key through a Manager that is not linked to
// the Verifier, as another instance would: the new secret works once the
// cached entry is NegativeTTL old, and a flood of wrong secrets for a
// cached key costs at most one store query per NegativeTTL.
func TestRolledElsewhere(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, apikey.VerifierOptions{NegativeTTL: 5 * time.Second})
	k, old := f.issue(t, apikey.IssueOptions{})
	if _, err := f.v.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	other := apikey.NewManager(f.st, apikey.ManagerOptions{Prefix: "fav_test", Now: f.clock.Now})
	_, rolled, err := other.Roll(ctx, k.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	before := f.v.Stats().Lookups
	for range 100 {
		if _, err := f.v.Verify(ctx, rolled.Reveal()); !errors.Is(err, apikey.ErrInvalid) {
			t.Fatalf("the rolled secret within NegativeTTL of caching: %v, want ErrInvalid", err)
		}
	}
	if n := f.v.Stats().Lookups - before; n != 0 {
		t.Errorf("wrong secrets within NegativeTTL made %d lookups, want 0", n)
	}
	f.clock.Advance(5 * time.Second)
	if _, err := f.v.Verify(ctx, rolled.Reveal()); err != nil {
		t.Fatalf("the rolled secret after NegativeTTL: %v", err)
	}
	if _, err := f.v.Verify(ctx, old); err != nil {
		t.Errorf("the old secret within the grace period: %v", err)
	}
	// Wrong secrets now: one recheck per NegativeTTL at most.
	before = f.v.Stats().Lookups
	body := rolled.Reveal()[:len(rolled.Reveal())-apikey.CheckLen]
	wrong := relabelWithChecksum(t, lastChanged(body)+strings.Repeat("0", apikey.CheckLen))
	for i := range 100 {
		if i == 50 {
			f.clock.Advance(5 * time.Second)
		}
		f.v.Verify(ctx, wrong)
	}
	if n := f.v.Stats().Lookups - before; n > 2 {
		t.Errorf("100 wrong secrets over two NegativeTTLs made %d lookups, want at most 2", n)
	}
}
