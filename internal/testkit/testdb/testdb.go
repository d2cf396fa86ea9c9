// Package testdb opens fresh, migrated apikit stores for tests: SQLite in a
// temporary directory, and PostgreSQL (when APIKIT_TEST_POSTGRES is set; see
// package testenv) in a schema of its own that is dropped afterwards, so
// that test runs never see each other's rows.
package testdb

import (
	"context"
	"crypto/rand"

	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/testenv"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/postgres"
	"github.com/apikit/apikit/store/sqlite"
	"github.com/jmoiron/sqlx"
)

// SQLite returns a migrated store on a new database file.
func SQLite(tb testing.TB) *store.Store {
	tb.Helper()
	return migrated(tb, func(ctx context.Context) (*store.Store, error) {
		return sqlite.Open(ctx, filepath.Join(tb.TempDir(), "apikit.db"))
	})
}

// Postgres returns a migrated store in a fresh PostgreSQL schema.
func Postgres(tb testing.TB) *store.Store {
	tb.Helper()
	dsn := PostgresDSN(tb)
	return migrated(tb, func(ctx context.Context) (*store.Store, error) { return postgres.Open(ctx, dsn) })
}

// PostgresDSN creates an empty schema and returns a URL that uses it (by
// search_path). The schema is dropped when the test ends.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	base := testenv.Postgres(tb)
	schema := "apikit_test_" + strings.ToLower(rand.Text()[:12])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := sqlx.ConnectContext(ctx, "postgres", base)
	if err != nil {
		tb.Fatalf("testdb: connecting to APIKIT_TEST_POSTGRES: %v", err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("testdb: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := sqlx.ConnectContext(ctx, "postgres", base)
		if err != nil {
			tb.Logf("testdb: dropping schema %s: %v", schema, err)
			return
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Logf("testdb: dropping schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" {
		tb.Fatalf("testdb: APIKIT_TEST_POSTGRES must be a postgres:// URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func migrated(tb testing.TB, open func(context.Context) (*store.Store, error)) *store.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := open(ctx)
	if err != nil {
		tb.Fatalf("testdb: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		tb.Fatalf("testdb: %v", err)
	}
	return st
}

// MigrateConcurrently opens the database four times at once, each a pool
// of its own as separate processes starting together would have, and
// migrates through each: every migration must be applied exactly once,
// and a later Migrate must find nothing to do.
func MigrateConcurrently(t *testing.T, open func(context.Context) (*store.Store, error)) {
	t.Helper()
	ctx := context.Background()
	const n = 4
	var wg sync.WaitGroup
	applied := make([]int, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			st, err := open(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			defer st.Close()
			ms, err := st.Migrate(ctx)
			applied[i], errs[i] = len(ms), err
		})
	}
	wg.Wait()
	total := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Migrate #%d: %v", i, errs[i])
		}
		total += applied[i]
	}
	st, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var recorded int
	if err := st.DB().GetContext(ctx, &recorded, "SELECT COUNT(*) FROM schema_migrations"); err != nil {
		t.Fatal(err)
	}
	if total != recorded || recorded == 0 {
		t.Errorf("%d migrations applied in all by %d concurrent Migrate calls, %d recorded; want each applied once", total, n, recorded)
	}
	if ms, err := st.Migrate(ctx); err != nil || len(ms) != 0 {
		t.Errorf("Migrate again = %v, %v; want nothing to do", ms, err)
	}
}
