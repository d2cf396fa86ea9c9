package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/sqlite"
	"github.com/apikit/apikit/store/storetest"
)

// TestConformance is the example of storetest's package documentation.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "conformance.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := st.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		return st
	})
}

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	testdb.MigrateConcurrently(t, func(ctx context.Context) (*store.Store, error) { return sqlite.Open(ctx, path) })
}

// Two handles on one database file, as two processes would have.
func TestPlansAcrossInstances(t *testing.T) {
	storetest.RunInstances(t, func(t *testing.T) (storetest.PlanStore, storetest.PlanStore) {
		path := filepath.Join(t.TempDir(), "shared.db")
		open := func() *store.Store {
			st, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
		a := open()
		if _, err := a.Migrate(context.Background(), store.Plans); err != nil {
			t.Fatal(err)
		}
		return a, open()
	})
}
