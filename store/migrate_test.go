package store_test

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/postgres"
	"github.com/apikit/apikit/store/sqlite"
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

// fresh opens an empty, unmigrated database of each backend.
func freshBackends(t *testing.T, fn func(t *testing.T, open func() *store.Store)) {
	opener := func(t *testing.T, o func(ctx context.Context) (*store.Store, error)) func() *store.Store {
		return func() *store.Store {
			st, err := o(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		n := 0
		fn(t, opener(t, func(ctx context.Context) (*store.Store, error) {
			n++
			return sqlite.Open(ctx, filepath.Join(dir, fmt.Sprintf("db%d.db", n)))
		}))
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, opener(t, func(ctx context.Context) (*store.Store, error) { return postgres.Open(ctx, testdb.PostgresDSN(t)) }))
	})
}

// migrateLegacy does what Migrate did before migrations were split by
// feature: the files 0001 to last of the single scope "apikit".
func migrateLegacy(t *testing.T, st *store.Store, last int) {
	t.Helper()
	ctx := context.Background()
	legacy, err := fs.Sub(st.Dialect().Migrations, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	names, err := fs.Glob(legacy, "*.sql")
	if err != nil || len(names) != 4 {
		t.Fatalf("legacy migrations %v, %v; want 4", names, err)
	}
	db := st.DB()
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (scope TEXT NOT NULL, version BIGINT NOT NULL,
		name TEXT NOT NULL, applied_at TIMESTAMP NOT NULL, PRIMARY KEY (scope, version))`); err != nil {
		t.Fatal(err)
	}
	for i, name := range names[:last] {
		b, _ := fs.ReadFile(legacy, name)
		if _, err := db.ExecContext(ctx, string(b)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := db.ExecContext(ctx, db.Rebind(`INSERT INTO schema_migrations VALUES ('apikit', ?, ?, ?)`),
			i+1, name, time.Now().UTC()); err != nil {
			t.Fatal(err)
		}
	}
}

// schema describes a database's tables, columns and indexes.
func schema(t *testing.T, st *store.Store) []string {
	t.Helper()
	q := `SELECT m.name || '.' || p.name || ' ' || p.type || ' notnull=' || p."notnull" || ' pk=' || p.pk
		FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table'
		UNION ALL SELECT 'index ' || tbl_name || '.' || name FROM sqlite_master WHERE type = 'index'`
	if st.Dialect().Name == store.DialectPostgres {
		q = `SELECT table_name || '.' || column_name || ' ' || data_type || ' nullable=' || is_nullable ||
			' default=' || COALESCE(column_default, '') || ' identity=' || is_identity
			FROM information_schema.columns WHERE table_schema = current_schema()
			UNION ALL SELECT 'index ' || tablename || '.' || indexname FROM pg_indexes WHERE schemaname = current_schema()
			UNION ALL SELECT 'constraint ' || conrelid::regclass::text || ' ' || pg_get_constraintdef(oid)
			FROM pg_constraint WHERE connamespace = current_schema()::regnamespace`
	}
	var rows []string
	if err := st.DB().Select(&rows, q); err != nil {
		t.Fatal(err)
	}
	slices.Sort(rows)
	return rows
}

// A database migrated by an earlier release, wholly or part-way, upgrades
// into the per-feature scheme: its data stays, it ends with the schema a
// new database gets, and later Migrate calls find nothing to do.
func TestMigrateUpgradesTheLegacyScope(t *testing.T) {
	freshBackends(t, func(t *testing.T, open func() *store.Store) {
		ctx := context.Background()
		fresh := open()
		if _, err := fresh.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		want := schema(t, fresh)
		for _, last := range []int{4, 2} {
			t.Run(fmt.Sprintf("AtVersion%d", last), func(t *testing.T) {
				st := open()
				migrateLegacy(t, st, last)
				if _, err := st.DB().ExecContext(ctx, st.DB().Rebind(`INSERT INTO users (email, created_at, updated_at) VALUES (?, ?, ?)`),
					"ada@example.com", time.Now().UTC(), time.Now().UTC()); err != nil {
					t.Fatal(err)
				}
				if _, err := st.DB().ExecContext(ctx, st.DB().Rebind(`INSERT INTO api_keys (id, user_id, prefix, secret_hash, scopes, created_at, updated_at)
					VALUES (?, 1, 'fav_live', ?, 'read', ?, ?)`), "4tQ2x9LmZpB7", make([]byte, 32), time.Now().UTC(), time.Now().UTC()); err != nil {
					t.Fatal(err)
				}
				applied, err := st.Migrate(ctx)
				if err != nil {
					t.Fatalf("Migrate after the legacy scope: %v", err)
				}
				var got []string
				for _, m := range applied {
					got = append(got, m.Scope+"/"+m.Name)
				}
				wantApplied := []string{"apikit/keys/0002_key_lifecycle.sql", "apikit/login/0002_email_changes.sql", "apikit/login/0003_login_codes.sql", "apikit/login/0004_session_details.sql", "apikit/billing/0002_billing_cycle_anchor.sql",
					"apikit/plans/0001_plans.sql", "apikit/usage/0001_usage.sql", "apikit/audit/0001_audit_events.sql"}
				if last == 2 {
					wantApplied = append([]string{"apikit/0003_billing.sql", "apikit/0004_verified_email.sql"}, wantApplied...)
				}
				if !slices.Equal(got, wantApplied) {
					t.Errorf("Migrate applied %v; want %v", got, wantApplied)
				}
				if diff := diffLines(schema(t, st), want); diff != "" {
					t.Errorf("upgraded schema differs from a new database's:\n%s", diff)
				}
				if _, found, err := st.UserByEmail(ctx, "ada@example.com"); err != nil || !found {
					t.Errorf("the user from before the upgrade: found %v, %v", found, err)
				}
				if k, found, err := st.Key(ctx, "4tQ2x9LmZpB7"); err != nil || !found || k.Metadata != nil || k.Tags != nil || k.AllowedCIDRs != nil ||
					len(k.Scopes) != 1 {
					t.Errorf("the key from before the upgrade = %+v, %v, %v; want it with no attributes", k, found, err)
				}
				if again, err := st.Migrate(ctx); err != nil || len(again) != 0 {
					t.Errorf("Migrate again = %v, %v; want nothing to do", again, err)
				}
				if err := st.CreateEmailChange(ctx, magiclink.EmailChange{Hash: make([]byte, 32), UserID: 1,
					NewEmail: "new@example.com", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
					t.Errorf("CreateEmailChange after the upgrade: %v", err)
				}
			})
		}
	})
}

func diffLines(got, want []string) string {
	var b strings.Builder
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	return b.String()
}

// Only the features asked for get tables; adding one later migrates it.
func TestMigrateFeatures(t *testing.T) {
	freshBackends(t, func(t *testing.T, open func() *store.Store) {
		ctx := context.Background()
		st := open()
		exists := func(table string) bool {
			_, err := st.DB().ExecContext(ctx, "SELECT 1 FROM "+table+" WHERE 1 = 0")
			return err == nil
		}
		if _, err := st.Migrate(ctx, store.Keys); err != nil {
			t.Fatal(err)
		}
		for table, want := range map[string]bool{"users": true, "api_keys": true, "api_key_notices": true, "login_tokens": false,
			"sessions": false, "billing_customers": false, "audit_events": false} {
			if exists(table) != want {
				t.Errorf("after Migrate(Keys): table %s exists = %v; want %v", table, !want, want)
			}
		}
		// Deleting a user touches only the tables there are.
		id, _, err := st.CreateUser(ctx, "ada@example.com", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if found, err := st.DeleteUser(ctx, id, store.DeleteUserOptions{DeleteSubscriptions: true}); err != nil || !found {
			t.Errorf("DeleteUser on a keys-only database = %v, %v", found, err)
		}
		applied, err := st.Migrate(ctx, store.Keys, store.Billing)
		if err != nil || len(applied) == 0 {
			t.Errorf("Migrate(Keys, Billing) = %v, %v; want billing's migrations", applied, err)
		}
		for _, m := range applied {
			if m.Scope != "apikit/billing" {
				t.Errorf("Migrate(Keys, Billing) applied %s/%s; want billing's migrations only", m.Scope, m.Name)
			}
		}
		if !exists("billing_customers") || exists("sessions") || exists("plan_usage") {
			t.Error("after adding Billing: want billing tables and still no login or plan tables")
		}
		applied, err = st.Migrate(ctx, store.Plans)
		if err != nil || len(applied) != 1 || applied[0].Scope != "apikit/plans" {
			t.Errorf("Migrate(Plans) = %v, %v; want the plans migration only", applied, err)
		}
		if !exists("plan_usage") || !exists("plan_overrides") || exists("usage_hourly") {
			t.Error("after adding Plans: want plan_usage and plan_overrides, and no usage tables")
		}
		applied, err = st.Migrate(ctx, store.Usage)
		if err != nil || len(applied) != 1 || applied[0].Scope != "apikit/usage" {
			t.Errorf("Migrate(Usage) = %v, %v; want the usage migration only", applied, err)
		}
		for _, table := range []string{"usage_hourly", "usage_daily", "usage_batches", "usage_alerts", "meter_events"} {
			if !exists(table) {
				t.Errorf("after adding Usage: no table %s", table)
			}
		}
		if exists("audit_events") {
			t.Error("audit_events exists before Migrate(Audit)")
		}
		applied, err = st.Migrate(ctx, store.Audit)
		if err != nil || len(applied) != 1 || applied[0].Scope != "apikit/audit" || !exists("audit_events") {
			t.Errorf("Migrate(Audit) = %v, %v; want the audit migration only, and audit_events", applied, err)
		}
		if _, err := st.Migrate(ctx, store.Feature("audits")); err == nil || !strings.Contains(err.Error(), `"audits"`) {
			t.Errorf("Migrate(unknown feature) = %v; want an error naming it", err)
		}
	})
}

func TestMigrateScopeErrorsSayWhat(t *testing.T) {
	st := testdb.SQLite(t)
	ctx := context.Background()
	for name, tc := range map[string]struct {
		scope string
		fsys  fs.FS
		want  string
	}{
		"Empty":      {"", fstest.MapFS{}, "scope is empty"},
		"Reserved":   {"apikit/keys", fstest.MapFS{}, `"apikit/keys" is apikit's own`},
		"Legacy":     {"apikit", fstest.MapFS{}, `"apikit" is apikit's own`},
		"NilFS":      {"notes", nil, `scope "notes": the fs.FS is nil`},
		"NoFiles":    {"notes", fstest.MapFS{"README": {}}, `scope "notes": no <version>_<name>.sql files`},
		"PerDialect": {"notes", fstest.MapFS{"sqlite/0001_a.sql": {}, "postgres/0001_a.sql": {}}, "directories postgres, sqlite: pass fs.Sub"},
		"BadName":    {"notes", fstest.MapFS{"notes.sql": {}}, `"notes.sql" of scope "notes" is not named`},
	} {
		if _, err := st.MigrateScope(ctx, tc.scope, tc.fsys); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: MigrateScope error %v; want it to say %q", name, err, tc.want)
		}
	}
}
