package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/sqlite"
	"github.com/apikit/apikit/store/sqlite/puresqlite"
)

// Both SQLite drivers open databases configured alike: WAL, foreign keys,
// a busy timeout, NORMAL synchronisation; and ":memory:" is one database
// however many queries run.
func TestSQLiteDrivers(t *testing.T) {
	for name, open := range map[string]func(context.Context, string) (*store.Store, error){
		"mattn": sqlite.Open, "modernc": puresqlite.Open,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st, err := open(ctx, filepath.Join(t.TempDir(), "p.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "5000", "synchronous": "1"} {
				var got string
				if err := st.DB().GetContext(ctx, &got, "PRAGMA "+pragma); err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("PRAGMA %s = %q, want %q", pragma, got, want)
				}
			}

			mem, err := open(ctx, ":memory:")
			if err != nil {
				t.Fatal(err)
			}
			defer mem.Close()
			if _, err := mem.Migrate(ctx, store.Keys); err != nil {
				t.Fatal(err)
			}
			id, _, err := mem.CreateUser(ctx, "ada@example.com", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if got, found, err := mem.UserByEmail(ctx, "ada@example.com"); err != nil || !found || got != id {
				t.Fatalf("UserByEmail in :memory: = %d, %v, %v; want %d", got, found, err, id)
			}
		})
	}
}
