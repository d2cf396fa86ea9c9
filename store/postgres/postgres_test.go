package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/apikit/apikit/internal/testdb"
	"github.com/apikit/apikit/store/postgres"
	"github.com/apikit/apikit/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return testdb.Postgres(t) })
}

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.PostgresDSN(t)
	const n = 4
	var wg sync.WaitGroup
	applied := make([]int, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			st, err := postgres.Open(ctx, dsn)
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
	st, err := postgres.Open(ctx, dsn)
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
