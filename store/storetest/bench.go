package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/magiclink"
)

// BenchmarkKey measures [apikey.Store.Key], the query behind a verifier's
// cache miss, among 1,000 keys of one user: "Plain" reads a complete key
// without attributes, "Attributes" (if the backend implements
// [KeyLifecycleStore]) one with metadata, two tags and two networks. b is
// a benchmark's; st a fresh, migrated store.
func BenchmarkKey(b *testing.B, st Backend) {
	ctx := b.Context()
	user, _, err := st.CreateUser(ctx, "bench@example.com", epoch)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if err := st.CreateKey(ctx, newKey(user, keyID(i), epoch), 0); err != nil {
			b.Fatal(err)
		}
	}
	bench := func(id string) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, found, err := st.Key(ctx, id); err != nil || !found {
					b.Fatalf("Key(%s) = found %v, %v", id, found, err)
				}
			}
		}
	}
	b.Run("Plain", bench(keyID(500)))
	if _, ok := st.(KeyLifecycleStore); !ok {
		return
	}
	rich := newKey(user, keyID(1000), epoch)
	rich.Metadata = json.RawMessage(`{"customer":"acme","tier":"gold"}`)
	rich.Tags = []string{"team:billing", "ci"}
	rich.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/48")}
	if err := st.CreateKey(ctx, rich, 0); err != nil {
		b.Fatal(err)
	}
	b.Run("Attributes", bench(rich.ID))
}

// VerifyMiss configures [BenchmarkVerifyMiss].
type VerifyMiss struct {
	// Sizes are the numbers of stored keys to measure at, ascending
	// (default 10³, 10⁴ and 10⁵).
	Sizes []int

	// Seed stores filler keys of the user with the given ids, as fast as
	// the backend can (one multi-row INSERT per batch, say); the keys'
	// other columns do not matter. If nil, the benchmark calls CreateKey
	// for each.
	Seed func(ctx context.Context, user int64, ids []string) error

	// Raw, if set, is the twin measured beside each size: the same
	// indexed lookup of the key id done directly with the database's
	// driver (a prepared statement, a scan into locals), for the ratio.
	Raw func(ctx context.Context, id string) error
}

// BenchmarkVerifyMiss measures an [apikey.Verifier]'s verification on a
// cache miss (the store lookup, the secret's hash, the cache insert) over
// the store st among more and more stored keys: a sub-benchmark
// "keys=N/verify" per size, and "keys=N/raw" beside it if bench.Raw is
// set. The time each seeding step took is logged. st is a fresh, migrated
// store.
func BenchmarkVerifyMiss(b *testing.B, st Backend, bench VerifyMiss) {
	ctx := b.Context()
	sizes := bench.Sizes
	if len(sizes) == 0 {
		sizes = []int{1_000, 10_000, 100_000}
	}
	seed := bench.Seed
	if seed == nil {
		seed = func(ctx context.Context, user int64, ids []string) error {
			for _, id := range ids {
				if err := st.CreateKey(ctx, newKey(user, id, epoch), 0); err != nil {
					return err
				}
			}
			return nil
		}
	}
	user, _, err := st.CreateUser(ctx, "bench@example.com", epoch)
	if err != nil {
		b.Fatal(err)
	}
	v := apikey.NewVerifier(st, apikey.VerifierOptions{TouchInterval: time.Hour})
	b.Cleanup(func() { v.Close() })
	m := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "sk_live", Verifier: v})
	k, tok, err := m.Issue(ctx, user, apikey.IssueOptions{Name: "bench", Scopes: []string{"favorites:read"}})
	if err != nil {
		b.Fatal(err)
	}
	token := tok.Reveal()
	stored := 1
	for _, n := range sizes {
		if n > stored {
			ids := make([]string, 0, n-stored)
			for i := stored; i < n; i++ {
				ids = append(ids, fmt.Sprintf("F%011d", i))
			}
			start := time.Now()
			if err := seed(ctx, user, ids); err != nil {
				b.Fatalf("seeding %d keys: %v", len(ids), err)
			}
			b.Logf("seeded %d keys (to %d) in %v", len(ids), n, time.Since(start).Round(time.Millisecond))
			stored = n
		}
		b.Run(fmt.Sprintf("keys=%d/verify", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v.Invalidate(k.ID)
				if _, err := v.Verify(ctx, token); err != nil {
					b.Fatal(err)
				}
			}
		})
		if bench.Raw != nil {
			b.Run(fmt.Sprintf("keys=%d/raw", n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := bench.Raw(ctx, k.ID); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSession measures [MagicLinkStore.Session], the query behind
// every signed-in request, among 1,000 sessions: "store", and "raw" beside
// it if raw is not nil: the same lookup of a session hash done directly
// with the database's driver, for the ratio. st is a fresh, migrated store.
func BenchmarkSession(b *testing.B, st Backend, raw func(ctx context.Context, hash []byte) error) {
	ctx := b.Context()
	user, _, err := st.CreateUser(ctx, "bench@example.com", epoch)
	if err != nil {
		b.Fatal(err)
	}
	hash := func(i int) []byte { h := sha256.Sum256(fmt.Appendf(nil, "session %d", i)); return h[:] }
	for i := range 1000 {
		se := magiclink.Session{Hash: hash(i), UserID: user, CreatedAt: epoch, ExpiresAt: epoch.Add(24 * time.Hour),
			UserAgent: "Mozilla/5.0", IP: "192.0.2.1"}
		if err := st.CreateSession(ctx, se); err != nil {
			b.Fatal(err)
		}
	}
	h := hash(500)
	b.Run("store", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, found, err := st.Session(ctx, h); err != nil || !found {
				b.Fatalf("Session = found %v, %v", found, err)
			}
		}
	})
	if raw == nil {
		return
	}
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := raw(ctx, h); err != nil {
				b.Fatal(err)
			}
		}
	})
}
