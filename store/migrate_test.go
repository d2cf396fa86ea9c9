package store_test

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/store"
)

func backends(t *testing.T, fn func(t *testing.T, st *store.Store)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, testdb.SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, testdb.Postgres(t)) })
}

func TestMigrateScope(t *testing.T) {
	backends(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		app := fstest.MapFS{
			"0001_notes.sql": {Data: []byte(`CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)`)},
			"README.md":      {Data: []byte("not a migration")},
		}
		applied, err := st.MigrateScope(ctx, "notes-app", app)
		if err != nil || len(applied) != 1 || applied[0].Version != 1 {
			t.Fatalf("MigrateScope = %+v, %v; want migration 1 applied", applied, err)
		}
		// Version 1 of another scope is not version 1 of apikit.
		if again, err := st.MigrateScope(ctx, "notes-app", app); err != nil || len(again) != 0 {
			t.Errorf("second MigrateScope = %+v, %v; want nothing to do", again, err)
		}

		// A migration that fails half-way leaves nothing behind.
		app["0002_broken.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE half (id BIGINT PRIMARY KEY);
			INSERT INTO no_such_table VALUES (1);`)}
		if _, err := st.MigrateScope(ctx, "notes-app", app); err == nil {
			t.Fatal("a failing migration succeeded")
		}
		var n int
		if err := st.DB().GetContext(ctx, &n, st.DB().Rebind(
			`SELECT COUNT(*) FROM schema_migrations WHERE scope = ? AND version = 2`), "notes-app"); err != nil || n != 0 {
			t.Errorf("failed migration recorded: count %d, err %v", n, err)
		}
		if _, err := st.DB().ExecContext(ctx, `INSERT INTO half (id) VALUES (1)`); err == nil {
			t.Error("the failed migration's first statement took effect")
		}
	})
}

func TestMigrateRejectsBadNames(t *testing.T) {
	st := testdb.SQLite(t)
	for name, fsys := range map[string]fstest.MapFS{
		"NoVersion": {"notes.sql": {Data: []byte("SELECT 1")}},
		"Zero":      {"0000_x.sql": {Data: []byte("SELECT 1")}},
		"Duplicate": {"0001_a.sql": {Data: []byte("SELECT 1")}, "1_b.sql": {Data: []byte("SELECT 1")}},
	} {
		if _, err := st.MigrateScope(context.Background(), "bad", fsys); err == nil {
			t.Errorf("%s: MigrateScope accepted bad migration names", name)
		}
	}
}
