package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/internal/testkit/testenv"
	"github.com/apikit/apikit/ratelimit"
)

// TestNotesAPI runs the embedding on SQLite and PostgreSQL: keys with
// scopes on chi, the application's own error format for every refusal,
// its own table, and a rate limit that a scope refusal does not spend.
func TestNotesAPI(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testNotesAPI(t, filepath.Join(t.TempDir(), "notes.db")) })
	t.Run("postgres", func(t *testing.T) {
		testenv.Postgres(t)
		testNotesAPI(t, testdb.PostgresDSN(t))
	})
}

func testNotesAPI(t *testing.T, databaseURL string) {
	ctx := context.Background()
	st, err := open(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Migrating again changes nothing.
	if err := migrate(ctx, st); err != nil {
		t.Fatalf("second migration: %v", err)
	}
	v := apikey.NewVerifier(st, apikey.VerifierOptions{Prefixes: []string{keyPrefix}})
	defer v.Close()
	a := &app{st: st, verifier: v, limiter: ratelimit.NewMemory(ratelimit.MemoryOptions{}), log: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(a.routes(ratelimit.PerMinute(3)))
	defer srv.Close()

	issue := func(email string, scopes ...string) string {
		t.Helper()
		uid, _, err := st.CreateUser(ctx, email, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, tok, err := apikey.NewManager(st, apikey.ManagerOptions{Prefix: keyPrefix}).Issue(ctx, uid, apikey.IssueOptions{Scopes: scopes})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Reveal()
	}
	type resp struct {
		status int
		header http.Header
		code   string
		body   []byte
	}
	do := func(method, key, body string) resp {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+"/v1/notes/", strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		json.Unmarshal(b, &e)
		return resp{res.StatusCode, res.Header, e.Error.Code, b}
	}

	writer := issue("ada@example.com", "notes:read", "notes:write")
	reader := issue("ada@example.com", "notes:read")
	if r := do("POST", writer, `{"body":"buy milk"}`); r.status != http.StatusCreated {
		t.Fatalf("POST with notes:write: %d %s", r.status, r.body)
	}
	r := do("GET", reader, "")
	if r.status != http.StatusOK || !bytes.Contains(r.body, []byte("buy milk")) {
		t.Fatalf("GET with notes:read: %d %s", r.status, r.body)
	}
	remaining := r.header.Get("X-RateLimit-Remaining")

	// A missing scope is refused in the application's format, with the
	// RFC 6750 challenge, and spends none of the key's rate limit.
	r = do("POST", reader, `{"body":"x"}`)
	if r.status != http.StatusForbidden || r.code != "insufficient_scope" ||
		!strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Errorf("POST with only notes:read: %d %q %q %s", r.status, r.code, r.header.Get("WWW-Authenticate"), r.body)
	}
	if r := do("GET", reader, ""); r.header.Get("X-RateLimit-Remaining") != decrement(t, remaining) {
		t.Errorf("X-RateLimit-Remaining went from %s to %s across a scope refusal and one GET; want one less", remaining, r.header.Get("X-RateLimit-Remaining"))
	}
	// No key, and a spent limit: the application's format too.
	if r := do("GET", "", ""); r.status != http.StatusUnauthorized || r.code != "unauthorized" {
		t.Errorf("no key: %d %q", r.status, r.code)
	}
	for range 3 {
		r = do("GET", reader, "")
	}
	if r.status != http.StatusTooManyRequests || r.code != "rate_limited" {
		t.Errorf("past the limit: %d %q %s", r.status, r.code, r.body)
	}
	// Another user's notes are not listed.
	other := issue("grace@example.com", "notes:read")
	if r := do("GET", other, ""); r.status != http.StatusOK || bytes.Contains(r.body, []byte("buy milk")) {
		t.Errorf("another user's GET: %d %s", r.status, r.body)
	}
}

func decrement(t *testing.T, s string) string {
	t.Helper()
	var n int
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		t.Fatalf("X-RateLimit-Remaining %q", s)
	}
	b, _ := json.Marshal(n - 1)
	return string(b)
}

// TestKeyCommand issues a key from the command line, as an operator would.
func TestKeyCommand(t *testing.T) {
	env := map[string]string{"DATABASE_URL": filepath.Join(t.TempDir(), "notes.db")}
	var out, errs bytes.Buffer
	if err := run(t.Context(), []string{"key", "--email", "ada@example.com", "--scopes", "notes:read"}, func(k string) string { return env[k] }, &out, &errs); err != nil {
		t.Fatalf("notesapi key: %v\n%s", err, errs.String())
	}
	if tok, err := apikey.Parse(strings.TrimSpace(out.String())); err != nil || tok.Prefix != keyPrefix {
		t.Errorf("notesapi key printed %q: %v", out.String(), err)
	}
	if err := run(t.Context(), []string{"key"}, func(k string) string { return env[k] }, &out, &errs); err == nil {
		t.Error("notesapi key without --email succeeded")
	}
}

// TestLinksNoBillingOrRedis: an application that uses keys, limits and the
// store links neither stripe-go nor go-redis.
func TestLinksNoBillingOrRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/stripe/") || strings.HasPrefix(dep, "github.com/redis/") ||
			dep == "github.com/apikit/apikit/billing" {
			t.Errorf("notesapi links %s", dep)
		}
	}
}
