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

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return testdb.SQLite(t) })
}

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	testdb.MigrateConcurrently(t, func(ctx context.Context) (*store.Store, error) { return sqlite.Open(ctx, path) })
}
