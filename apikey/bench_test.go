package apikey_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
	"github.com/apikit/apikit/apikey/bcrypthash"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/store"
)

// BenchmarkVerify measures verification on a cache hit, on a cache miss
// against SQLite and PostgreSQL with 1,000 and 1,000,000 stored keys, and
// with bcrypt-hashed keys for contrast.
//
//	go test -run '^$' -bench Verify -benchmem -count 6 ./apikey
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	b.Run("hit", func(b *testing.B) {
		st := testdb.SQLite(b)
		v, token := benchKey(b, st, apikey.VerifierOptions{})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hit-parallel", func(b *testing.B) {
		st := testdb.SQLite(b)
		v, token := benchKey(b, st, apikey.VerifierOptions{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := v.Verify(ctx, token); err != nil {
					b.Error(err)
				}
			}
		})
	})
	for _, backend := range []struct {
		name string
		open func(testing.TB) *store.Store
	}{{"sqlite", testdb.SQLite}, {"postgres", testdb.Postgres}} {
		for _, n := range []int{1_000, 1_000_000} {
			b.Run(fmt.Sprintf("miss/%s/%dkeys", backend.name, n), func(b *testing.B) {
				st := backend.open(b)
				v, token := benchKey(b, st, apikey.VerifierOptions{})
				fill(b, st, n)
				id := token[len("fav_live_") : len("fav_live_")+apikey.IDLen]
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					v.Invalidate(id)
					if _, err := v.Verify(ctx, token); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("bcrypt", func(b *testing.B) {
		st := testdb.SQLite(b)
		v, token := benchKey(b, st, apikey.VerifierOptions{Hasher: bcrypthash.Hasher{}})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, token); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMiddleware compares a trivial handler with and without the key
// middleware (cache hit).
//
//	go test -run '^$' -bench Middleware -benchmem -count 6 ./apikey
func BenchmarkMiddleware(b *testing.B) {
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	st := testdb.SQLite(b)
	v, token := benchKey(b, st, apikey.VerifierOptions{})
	for _, h := range []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"apikey", apikey.Middleware(v, apikey.MiddlewareOptions{})(bare)}} {
		b.Run(h.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/v1/me", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				h.h.ServeHTTP(w, r)
				if w.code != http.StatusNoContent {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// discard is a ResponseWriter that keeps only the status.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }

func benchKey(b *testing.B, st *store.Store, vo apikey.VerifierOptions) (*apikey.Verifier, string) {
	b.Helper()
	ctx := context.Background()
	v := apikey.NewVerifier(st, vo)
	b.Cleanup(func() { v.Close() })
	m := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live", Verifier: v})
	user, _, err := st.CreateUser(ctx, "bench@example.com", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	_, tok, err := m.Issue(ctx, user, apikey.IssueOptions{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok.Reveal()); err != nil {
		b.Fatal(err)
	}
	return v, tok.Reveal()
}

// fill inserts n filler keys for one user in a single statement.
func fill(b *testing.B, st *store.Store, n int) {
	b.Helper()
	ctx := context.Background()
	user, _, err := st.CreateUser(ctx, "filler@example.com", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	q := `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)
		INSERT INTO api_keys (id, user_id, prefix, secret_hash, created_at, updated_at)
		SELECT printf('F%011d', i), ?, 'fav_live', randomblob(32), datetime('now'), datetime('now') FROM s`
	if st.Dialect().Name == "postgres" {
		q = `INSERT INTO api_keys (id, user_id, prefix, secret_hash, created_at, updated_at)
		SELECT 'F' || lpad(i::text, 11, '0'), $2, 'fav_live', sha256(i::text::bytea), now(), now()
		FROM generate_series(1, $1) AS i`
	}
	if _, err := st.DB().ExecContext(ctx, q, n, user); err != nil {
		b.Fatalf("filling %d keys: %v", n, err)
	}
	if st.Dialect().Name == "postgres" {
		_, _ = st.DB().ExecContext(ctx, "ANALYZE api_keys")
	}
}

// BenchmarkMiddlewareAllowedCIDRs is BenchmarkMiddleware/apikey for a key
// restricted to networks (the client address is parsed from RemoteAddr on
// every request), over the memory store, which keeps them.
//
//	go test -run '^$' -bench MiddlewareAllowedCIDRs -benchmem ./apikey
func BenchmarkMiddlewareAllowedCIDRs(b *testing.B) {
	ctx := context.Background()
	st := apikeytest.NewMemoryStore()
	v := apikey.NewVerifier(st, apikey.VerifierOptions{})
	b.Cleanup(func() { v.Close() })
	m := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live", Verifier: v})
	user, _, _ := st.CreateUser(ctx, "bench@example.com", time.Now())
	cidrs, _ := apikey.ParseCIDRs("10.0.0.0/8 192.0.2.0/24")
	_, tok, err := m.Issue(ctx, user, apikey.IssueOptions{AllowedCIDRs: cidrs})
	if err != nil {
		b.Fatal(err)
	}
	h := apikey.Middleware(v, apikey.MiddlewareOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	r := httptest.NewRequest("GET", "/v1/me", nil)
	r.Header.Set("Authorization", "Bearer "+tok.Reveal())
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	}
}
