package puresqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/sqlite/puresqlite"
	"github.com/apikit/apikit/store/storetest"
)

// open returns a migrated store on a new database file.
func open(t *testing.T) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := puresqlite.Open(ctx, filepath.Join(t.TempDir(), "apikit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return open(t) })
}

func TestPragmas(t *testing.T) {
	st := open(t)
	for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "5000", "synchronous": "1"} {
		var got string
		if err := st.DB().Get(&got, "PRAGMA "+pragma); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %q, want %q", pragma, got, want)
		}
	}
}

func TestMemoryDatabase(t *testing.T) {
	ctx := context.Background()
	st, err := puresqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, store.Keys); err != nil {
		t.Fatal(err)
	}
	id, _, err := st.CreateUser(ctx, "ada@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, found, err := st.UserByEmail(ctx, "ada@example.com"); err != nil || !found || got != id {
		t.Fatalf("UserByEmail = %d, %v, %v; want %d", got, found, err, id)
	}
}

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	testdb.MigrateConcurrently(t, func(ctx context.Context) (*store.Store, error) { return puresqlite.Open(ctx, path) })
}
