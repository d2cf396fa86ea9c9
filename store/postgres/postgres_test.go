package postgres_test

import (
	"context"
	"testing"

	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/postgres"
	"github.com/apikit/apikit/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return testdb.Postgres(t) })
}

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	testdb.MigrateConcurrently(t, func(ctx context.Context) (*store.Store, error) { return postgres.Open(ctx, dsn) })
}
