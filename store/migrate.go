package store

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Migration is one numbered schema change.
type Migration struct {
	Version int
	Name    string // file name, such as "0001_users_api_keys.sql"
	SQL     string
}

// readMigrations returns the migrations in fsys in order. Files must be
// named "<version>_<description>.sql" with distinct positive versions.
func readMigrations(fsys fs.FS) ([]Migration, error) {
	if fsys == nil {
		return nil, fmt.Errorf("store: no migrations")
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("store: reading migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("store: migration %q is not named <version>_<name>.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("store: reading migration %s: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("store: migrations %s and %s share a version", ms[i-1].Name, ms[i].Name)
		}
	}
	return ms, nil
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	scope      TEXT NOT NULL,
	version    BIGINT NOT NULL,
	name       TEXT NOT NULL,
	applied_at TIMESTAMP NOT NULL,
	PRIMARY KEY (scope, version)
)`

// Migrate applies apikit's migrations that have not been applied yet, each
// in its own transaction together with its row in schema_migrations, so that
// a failed migration leaves nothing half-written. It is safe to call again,
// and from several processes at once: they are serialised, and each
// migration is applied once. It returns the migrations it applied.
func (s *Store) Migrate(ctx context.Context) ([]Migration, error) {
	return s.MigrateScope(ctx, "apikit", s.dialect.Migrations)
}

// MigrateScope applies an application's own migrations, such as the tables
// of its API, in the same way as [Store.Migrate]: files named
// "<version>_<description>.sql" at the root of migrations, recorded in
// schema_migrations under scope, which keeps their versions apart from
// apikit's and other applications'. The SQL is the application's, so it
// must suit the store's database ([Store.Dialect]).
func (s *Store) MigrateScope(ctx context.Context, scope string, migrations fs.FS) ([]Migration, error) {
	if scope == "" {
		return nil, fmt.Errorf("store: migration scope is empty")
	}
	ms, err := readMigrations(migrations)
	if err != nil {
		return nil, err
	}
	var applied []Migration
	for _, m := range ms {
		did := false
		err := s.inTx(ctx, func(tx *sqlx.Tx) error {
			if s.dialect.LockMigrations != nil {
				if err := s.dialect.LockMigrations(ctx, tx); err != nil {
					return fmt.Errorf("locking: %w", err)
				}
			}
			if _, err := tx.ExecContext(ctx, createMigrationsTable); err != nil {
				return err
			}
			var n int
			if err := tx.GetContext(ctx, &n, tx.Rebind(
				`SELECT COUNT(*) FROM schema_migrations WHERE scope = ? AND version = ?`), scope, m.Version); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, tx.Rebind(
				`INSERT INTO schema_migrations (scope, version, name, applied_at) VALUES (?, ?, ?, ?)`),
				scope, m.Version, m.Name, ts(time.Now()))
			did = err == nil
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("store: migration %s/%s: %w", scope, m.Name, err)
		}
		if did {
			applied = append(applied, m)
		}
	}
	return applied, nil
}
