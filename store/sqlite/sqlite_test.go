package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey/apikeytest"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/internal/storebench"
	"github.com/apikit/apikit/store/sqlite"
	"github.com/apikit/apikit/store/storetest"
	"github.com/apikit/apikit/usage/usagetest"
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
	storetest.BenchmarkFlush10k(b, testdb.SQLite(b))
}

// The same flush when every counter exists already: the upserts update.
func BenchmarkFlush10kUpdate(b *testing.B) {
	storetest.BenchmarkFlush10kUpdate(b, testdb.SQLite(b))
}

// The store query behind a verification cache miss: one key by its id.
func BenchmarkKey(b *testing.B) {
	storetest.BenchmarkKey(b, testdb.SQLite(b))
}

// BenchmarkVerifyMiss measures a verifier's cache miss among 10³ to 10⁶
// keys, beside its raw database/sql twin:
//
//	go test -run '^$' -bench VerifyMiss -benchmem -count 5 ./store/sqlite
func BenchmarkVerifyMiss(b *testing.B) {
	st := testdb.SQLite(b)
	storetest.BenchmarkVerifyMiss(b, st, storebench.VerifyMiss(b, st, 1_000, 10_000, 100_000, 1_000_000))
}

// BenchmarkSession measures the session lookup of every signed-in
// request, beside its raw database/sql twin:
//
//	go test -run '^$' -bench Session -benchmem -count 5 ./store/sqlite
func BenchmarkSession(b *testing.B) {
	st := testdb.SQLite(b)
	storetest.BenchmarkSession(b, st, storebench.Session(b, st))
}

// Options.Trace sees each operation of the key and login stores by name,
// and its error.
func TestTrace(t *testing.T) {
	type spanKey struct{}
	var spans []string
	var errs []error
	st, err := sqlite.OpenWith(t.Context(), filepath.Join(t.TempDir(), "trace.db"), sqlite.Options{
		Trace: func(ctx context.Context, name string) (context.Context, func(error)) {
			return context.WithValue(ctx, spanKey{}, name), func(err error) {
				spans, errs = append(spans, name), append(errs, err)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	if _, err := st.Migrate(ctx, store.Keys, store.Login); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Key(ctx, "4tQ2x9LmZpB7"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Session(ctx, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if err := st.TouchKeys(ctx, map[string]time.Time{"4tQ2x9LmZpB7": time.Now()}); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	// The verifier's lookup runs detached from cancellation on SQLite,
	// but not for a context that has already ended.
	if _, _, err := st.KeyForVerify(canceled, "4tQ2x9LmZpB7"); !errors.Is(err, context.Canceled) {
		t.Fatalf("KeyForVerify with a canceled context: %v, want context.Canceled", err)
	}
	want := []string{"store.Key", "store.Session", "store.TouchKeys", "store.KeyForVerify"}
	if !slices.Equal(spans, want) {
		t.Fatalf("spans = %q, want %q", spans, want)
	}
	for i, err := range errs[:3] {
		if err != nil {
			t.Errorf("span %s ended with %v", spans[i], err)
		}
	}
	if !errors.Is(errs[3], context.Canceled) {
		t.Errorf("span of a failed KeyForVerify ended with %v, want context.Canceled", errs[3])
	}
}

// twoInstances opens two handles on one new database, migrated for
// feature, as two instances of an application have.
func twoInstances(t *testing.T, feature store.Feature) (*store.Store, *store.Store) {
	t.Helper()
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
	if _, err := a.Migrate(context.Background(), feature); err != nil {
		t.Fatal(err)
	}
	return a, open()
}
