package sqlite_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/apikit/apikit/internal/testdb"
	"github.com/apikit/apikit/store/sqlite"
	"github.com/apikit/apikit/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return testdb.SQLite(t) })
}

func TestMemoryDatabase(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	id, _, err := st.EnsureUser(ctx, "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	// Every query must see the same database, whichever connection it uses.
	if got, found, err := st.UserByEmail(ctx, "ada@example.com"); err != nil || !found || got != id {
		t.Fatalf("UserByEmail = %d, %v, %v; want %d", got, found, err, id)
	}
}

func TestPragmas(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "5000"} {
		var got string
		if err := st.DB().GetContext(ctx, &got, "PRAGMA "+pragma); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %q, want %q", pragma, got, want)
		}
	}
}

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	const n = 4
	var wg sync.WaitGroup
	applied := make([]int, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			st, err := sqlite.Open(ctx, path) // a separate pool, as another process would have
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
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var recorded int
	if err := st.DB().GetContext(ctx, &recorded, "SELECT COUNT(*) FROM schema_migrations"); err != nil {
		t.Fatal(err)
	}
	if total != recorded {
		t.Errorf("%d migrations applied in all by %d concurrent Migrate calls, %d recorded; want each applied once", total, n, recorded)
	}
	if ms, err := st.Migrate(ctx); err != nil || len(ms) != 0 {
		t.Errorf("Migrate again = %v, %v; want nothing to do", ms, err)
	}
}
