package postgres_test

import (
	"context"
	"testing"

	"github.com/apikit/apikit/apikey/apikeytest"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/internal/storebench"
	"github.com/apikit/apikit/store/postgres"
	"github.com/apikit/apikit/store/storetest"
	"github.com/apikit/apikit/usage/usagetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return testdb.Postgres(t) })
}

// The whole suite with every statement in one round trip, as behind a
// pooler in transaction mode.
func TestConformanceTransactionPooling(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		dsn := testdb.PostgresDSN(t)
		st, err := postgres.OpenWith(context.Background(), dsn, postgres.Options{TransactionPooling: true, MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := st.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// The hot queries are prepared once per connection, unless the store
// runs behind a pooler in transaction mode (by the option, or by
// binary_parameters=yes in the URL), where a prepared statement may not
// outlive its round trip.
func TestPreparedStatements(t *testing.T) {
	for _, c := range []struct {
		name     string
		opts     postgres.Options
		param    string
		prepared bool
	}{
		{"default", postgres.Options{}, "", true},
		{"TransactionPooling", postgres.Options{TransactionPooling: true}, "", false},
		{"binary_parameters", postgres.Options{}, "binary_parameters=yes", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			dsn := testdb.PostgresDSN(t)
			if c.param != "" {
				dsn += "&" + c.param
			}
			c.opts.MaxConns = 1 // one session, to ask it what it prepared
			st, err := postgres.OpenWith(ctx, dsn, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if _, err := st.Migrate(ctx, store.Keys, store.Login); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if _, _, err := st.Key(ctx, "4tQ2x9LmZpB7"); err != nil {
					t.Fatal(err)
				}
				if _, _, err := st.Session(ctx, make([]byte, 32)); err != nil {
					t.Fatal(err)
				}
			}
			var n int
			if err := st.DB().GetContext(ctx, &n, `SELECT count(*) FROM pg_prepared_statements
				WHERE statement LIKE '%FROM api_keys WHERE id = $1' OR statement LIKE '%FROM sessions s WHERE s.id_hash = $1'`); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 2, false: 0}[c.prepared]; n != want {
				t.Errorf("%d hot queries prepared in the session, want %d", n, want)
			}
		})
	}
}

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	testdb.MigrateConcurrently(t, func(ctx context.Context) (*store.Store, error) { return postgres.Open(ctx, dsn) })
}

// Two connection pools on one database, as two instances would have.
func TestPlansAcrossInstances(t *testing.T) {
	storetest.RunInstances(t, func(t *testing.T) (storetest.PlanStore, storetest.PlanStore) {
		return twoInstances(t, store.Plans)
	})
}

// Two handles on one database, as two instances have: usage counts add
// up and an alert is claimed once.
func TestUsageAcrossInstances(t *testing.T) {
	usagetest.RunInstances(t, func(t *testing.T) (usagetest.Backend, usagetest.Backend) {
		return twoInstances(t, store.Usage)
	})
}

// Two handles on one database, as two instances have: a notice is
// claimed once.
func TestNoticesAcrossInstances(t *testing.T) {
	storetest.RunNoticeInstances(t, func(t *testing.T) (apikeytest.NoticeBackend, apikeytest.NoticeBackend) {
		return twoInstances(t, store.Keys)
	})
}

// The flush of 10,000 active keys' counters: one batch, one statement per
// 500 rows. Run with -bench Flush10k -benchtime 1x -count 5 for medians.
func BenchmarkFlush10k(b *testing.B) {
	storetest.BenchmarkFlush10k(b, testdb.Postgres(b))
}

// The same flush when every counter exists already: the upserts update.
func BenchmarkFlush10kUpdate(b *testing.B) {
	storetest.BenchmarkFlush10kUpdate(b, testdb.Postgres(b))
}

// The store query behind a verification cache miss: one key by its id.
func BenchmarkKey(b *testing.B) {
	storetest.BenchmarkKey(b, testdb.Postgres(b))
}

// BenchmarkVerifyMiss measures a verifier's cache miss among 10³ to 10⁶
// keys, beside its raw database/sql twin:
//
//	go test -run '^$' -bench VerifyMiss -benchmem -count 5 ./store/postgres
func BenchmarkVerifyMiss(b *testing.B) {
	st := testdb.Postgres(b)
	storetest.BenchmarkVerifyMiss(b, st, storebench.VerifyMiss(b, st, 1_000, 10_000, 100_000, 1_000_000))
}

// BenchmarkSession measures the session lookup of every signed-in
// request, beside its raw database/sql twin:
//
//	go test -run '^$' -bench Session -benchmem -count 5 ./store/postgres
func BenchmarkSession(b *testing.B) {
	st := testdb.Postgres(b)
	storetest.BenchmarkSession(b, st, storebench.Session(b, st))
}

// twoInstances opens two handles on one new database, migrated for
// feature, as two instances of an application have.
func twoInstances(t *testing.T, feature store.Feature) (*store.Store, *store.Store) {
	t.Helper()
	dsn := testdb.PostgresDSN(t)
	open := func() *store.Store {
		st, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a := open()
	if _, err := a.Migrate(context.Background(), feature); err != nil {
		t.Fatal(err)
	}
	return a, open()
}
