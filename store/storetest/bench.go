package storetest

import "testing"

// BenchmarkKey measures [apikey.Store.Key], the query behind a verifier's
// cache miss, on a complete key among 1,000 of one user. b is a
// benchmark's; st a fresh, migrated store.
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
	id := keyID(500)
	b.ReportAllocs()
	for b.Loop() {
		if _, found, err := st.Key(ctx, id); err != nil || !found {
			b.Fatalf("Key(%s) = found %v, %v", id, found, err)
		}
	}
}
