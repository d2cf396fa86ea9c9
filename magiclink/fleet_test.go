package magiclink_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/magiclink"
)

// TestSignOutEverywhereAcrossInstances: sessions are read from the store
// on every request, with no cache per instance, so signing a user out
// everywhere through one instance is refused by every other at once: no
// invalidation message is needed, and none can be missed.
func TestSignOutEverywhereAcrossInstances(t *testing.T) {
	h := newHarness(t, setup{open: testdb.Postgres}) // instance A
	ada := h.user("ada@example.com")
	c := browser(t)
	h.signIn(c, "ada@example.com")
	if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != http.StatusOK {
		t.Fatalf("signed in on A: GET /app = %d", r.status)
	}
	// Instance B: another Service over the same database.
	b, err := magiclink.New(h.store, magiclink.Options{BaseURL: "https://b.example", Mailer: magiclink.NewConsoleMailer(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	start := time.Now()
	if err := b.RevokeSessions(t.Context(), ada); err != nil {
		t.Fatal(err)
	}
	r := do(t, c, "GET", h.http.URL+"/app", nil)
	if r.status != http.StatusSeeOther {
		t.Errorf("A after sign-out everywhere through B: GET /app = %d, want 303 to sign in", r.status)
	}
	t.Logf("sign-out everywhere through B refused by A after %v (the next request)", time.Since(start))
}
