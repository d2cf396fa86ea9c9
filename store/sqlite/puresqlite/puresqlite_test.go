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

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	testdb.MigrateConcurrently(t, func(ctx context.Context) (*store.Store, error) { return puresqlite.Open(ctx, path) })
}
