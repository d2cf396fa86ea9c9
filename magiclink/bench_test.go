package magiclink_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/store"
)

// BenchmarkSessionLookup measures RequireUser authenticating a request by
// its session cookie. Sessions are not cached, so that logging out or
// revoking takes effect at once on every instance: each request is a
// cache miss, one indexed query joined with users, on SQLite and
// PostgreSQL; "bare" is the same request to the handler without the
// middleware, for the ratio.
//
//	go test -run '^$' -bench SessionLookup -benchtime 2000x -count 3 ./magiclink
func BenchmarkSessionLookup(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, found := magiclink.UserFrom(r.Context()); !found && r.Header.Get("Cookie") != "" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	b.Run("bare", func(b *testing.B) {
		req := httptest.NewRequest("GET", "/app", nil)
		b.ReportAllocs()
		for b.Loop() {
			ok.ServeHTTP(httptest.NewRecorder(), req)
		}
	})
	for _, backend := range []struct {
		name string
		open func(testing.TB) *store.Store
	}{{"sqlite", testdb.SQLite}, {"postgres", testdb.Postgres}} {
		b.Run("miss/"+backend.name, func(b *testing.B) {
			st := backend.open(b)
			svc, err := magiclink.New(st, magiclink.Options{BaseURL: "https://api.example.com", Mailer: magiclink.NewConsoleMailer(nil)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = svc.Close(context.Background()) })
			id, _, err := st.CreateUser(context.Background(), "ada@example.com", time.Now())
			if err != nil {
				b.Fatal(err)
			}
			rec := httptest.NewRecorder()
			if err := svc.SignIn(context.Background(), rec, id); err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest("GET", "/app", nil)
			req.AddCookie(rec.Result().Cookies()[0])
			h := svc.RequireUser(ok)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
