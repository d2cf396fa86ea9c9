package storetest

import (
	"encoding/json"
	"net/netip"
	"testing"
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
