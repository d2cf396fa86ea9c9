package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/store"
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
	id, _, err := st.CreateUser(ctx, "ada@example.com", time.Now())
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
	path := filepath.Join(t.TempDir(), "m.db")
	testdb.MigrateConcurrently(t, func(ctx context.Context) (*store.Store, error) { return sqlite.Open(ctx, path) })
}
