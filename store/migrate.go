package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"
)

// Feature is a part of apikit whose tables [Store.Migrate] creates. The
// users table is the base of every feature and is always migrated.
type Feature string

// The features, each a directory of numbered migrations in
// [Dialect.Migrations], recorded in schema_migrations under the scope
// "apikit/<feature>".
const (
	Keys    Feature = "keys"    // api_keys, api_key_notices (package apikey: keys, their attributes, expiry notices)
	Login   Feature = "login"   // login_tokens, sessions, email_changes (package magiclink)
	Billing Feature = "billing" // billing_* (package billing)
	Plans   Feature = "plans"   // plan_usage, plan_overrides (package plan: durable quotas, overrides)
	Usage   Feature = "usage"   // usage_*, meter_events (packages usage and billing/meter: metering, alerts, Stripe meter outbox)
	Audit   Feature = "audit"   // audit_events (package audit: the security log)
)

// users is the base that every feature's tables refer to.
const users Feature = "users"

// features is every feature in the order Migrate applies them.
var features = []Feature{users, Keys, Login, Billing, Plans, Usage, Audit}

// legacyFeatures are the features whose first migrations create the tables
// of the legacy scope: adopting a legacy database records them as applied.
// Features added later ([Plans], [Usage], [Audit]) are migrated as usual.
var legacyFeatures = []Feature{users, Keys, Login, Billing}

// legacyScope is the single scope of apikit's migrations before they were
// split by feature: versions 0001 to 0004, kept in the "legacy" directory
// of [Dialect.Migrations].
const legacyScope = "apikit"

// Migration is one numbered schema change.
type Migration struct {
	Scope   string // "apikit/keys", or the scope given to MigrateScope
	Version int
	Name    string // file name, such as "0001_api_keys.sql"
	SQL     string
}

// readMigrations returns the migrations in fsys in order. Files must be
// named "<version>_<description>.sql" with distinct positive versions.
func readMigrations(scope string, fsys fs.FS) ([]Migration, error) {
	if fsys == nil {
		return nil, fmt.Errorf("store: migrations of scope %q: the fs.FS is nil", scope)
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("store: migrations of scope %q: %w", scope, err)
	}
	var ms []Migration
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("store: migration %q of scope %q is not named <version>_<name>.sql", e.Name(), scope)
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("store: migrations of scope %q: %w", scope, err)
		}
		ms = append(ms, Migration{Scope: scope, Version: v, Name: e.Name(), SQL: string(b)})
	}
	if len(ms) == 0 {
		hint := ""
		if len(dirs) > 0 {
			hint = fmt.Sprintf(" (it holds the directories %s: pass fs.Sub of one)", strings.Join(dirs, ", "))
		}
		return nil, fmt.Errorf("store: migrations of scope %q: no <version>_<name>.sql files at the root of the fs.FS%s", scope, hint)
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("store: migrations %s and %s of scope %q share a version", ms[i-1].Name, ms[i].Name, scope)
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

// Migrate creates the tables of the given features (all of them when none
// is given) and of the users they share, applying the migrations that have
// not been applied yet. An application that uses only API keys migrates
// [Keys]; adding [Login], [Billing], [Plans], [Usage] or [Audit] later
// migrates their tables then.
//
// Each migration runs in its own transaction together with its row in
// schema_migrations (stamped by the database's clock), so that a failed
// migration leaves nothing half-written. Migrate is safe to call again,
// and from several processes at once: they are serialised, and each
// migration is applied once. It returns the migrations it applied.
//
// A database migrated by an earlier release, under the single scope
// "apikit", is brought up to that scope's last version and then recorded
// as having the first migration of users, keys, login and billing, which
// create the same tables; later migrations (and the features that came
// later: plans, usage, audit) apply as usual.
func (s *Store) Migrate(ctx context.Context, feats ...Feature) ([]Migration, error) {
	want := map[Feature]bool{users: true}
	for _, f := range feats {
		if f == users || !slices.Contains(features, f) {
			return nil, fmt.Errorf("store: Migrate: unknown feature %q (want store.Keys, store.Login, store.Billing, store.Plans, store.Usage or store.Audit)", f)
		}
		want[f] = true
	}
	if len(feats) == 0 {
		for _, f := range features {
			want[f] = true
		}
	}
	applied, err := s.adoptLegacy(ctx)
	if err != nil {
		return applied, err
	}
	for _, f := range features {
		if !want[f] {
			continue
		}
		ms, err := s.dialectMigrations(string(f))
		if err != nil {
			return applied, err
		}
		done, err := s.apply(ctx, ms)
		applied = append(applied, done...)
		if err != nil {
			return applied, err
		}
	}
	return applied, nil
}

// dialectMigrations reads one directory of the dialect's migrations.
func (s *Store) dialectMigrations(dir string) ([]Migration, error) {
	sub, err := fs.Sub(s.dialect.Migrations, dir)
	if err != nil {
		return nil, fmt.Errorf("store: the %s dialect's migrations: %w", s.dialect.Name, err)
	}
	scope := legacyScope
	if dir != "legacy" {
		scope = legacyScope + "/" + dir
	}
	return readMigrations(scope, sub)
}

// adoptLegacy brings a database migrated under the legacy scope into the
// per-feature scheme: it applies the legacy migrations it lacks, then
// records every feature's first migration as applied. It does nothing to a
// database without legacy rows (a new one, or one adopted already).
func (s *Store) adoptLegacy(ctx context.Context) ([]Migration, error) {
	var legacy, adopted int
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := s.lock(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, createMigrationsTable); err != nil {
			return err
		}
		err := tx.GetContext(ctx, &legacy, tx.Rebind(`SELECT COUNT(*) FROM schema_migrations WHERE scope = ?`), legacyScope)
		if err != nil {
			return err
		}
		return tx.GetContext(ctx, &adopted, tx.Rebind(`SELECT COUNT(*) FROM schema_migrations WHERE scope = ?`),
			legacyScope+"/"+string(users))
	})
	if err != nil || legacy == 0 || adopted > 0 {
		if err != nil {
			err = fmt.Errorf("store: reading schema_migrations: %w", err)
		}
		return nil, err
	}
	ms, err := s.dialectMigrations("legacy")
	if err != nil {
		return nil, err
	}
	applied, err := s.apply(ctx, ms)
	if err != nil {
		return applied, err
	}
	var firsts []Migration
	for _, f := range legacyFeatures {
		fm, err := s.dialectMigrations(string(f))
		if err != nil {
			return applied, err
		}
		firsts = append(firsts, fm[0])
	}
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := s.lock(ctx, tx); err != nil {
			return err
		}
		for _, m := range firsts {
			if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO schema_migrations (scope, version, name, applied_at)
				VALUES (?, ?, ?, CURRENT_TIMESTAMP) ON CONFLICT (scope, version) DO NOTHING`), m.Scope, m.Version, m.Name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return applied, fmt.Errorf("store: recording the %q scope's migrations by feature: %w", legacyScope, err)
	}
	return applied, nil
}

// MigrateScope applies an application's own migrations, such as the tables
// of its API, in the same way as [Store.Migrate]: files named
// "<version>_<description>.sql" at the root of migrations, recorded in
// schema_migrations under scope, which keeps their versions apart from
// apikit's and other applications'. The SQL is the application's, so it
// must suit the store's database: keep a directory per dialect, named
// after [Dialect.Name], and pass fs.Sub of the one the store speaks (see
// the example). The scope "apikit" and those under "apikit/" are
// apikit's own.
func (s *Store) MigrateScope(ctx context.Context, scope string, migrations fs.FS) ([]Migration, error) {
	switch {
	case scope == "":
		return nil, errors.New("store: MigrateScope: the scope is empty: name the application, such as \"myapp\"")
	case scope == legacyScope || strings.HasPrefix(scope, legacyScope+"/"):
		return nil, fmt.Errorf("store: MigrateScope: the scope %q is apikit's own: use Migrate for apikit's tables, another name for yours", scope)
	}
	ms, err := readMigrations(scope, migrations)
	if err != nil {
		return nil, err
	}
	return s.apply(ctx, ms)
}

// lock runs the dialect's LockMigrations, if any.
func (s *Store) lock(ctx context.Context, tx *sqlx.Tx) error {
	if s.dialect.LockMigrations == nil {
		return nil
	}
	if err := s.dialect.LockMigrations(ctx, tx); err != nil {
		return fmt.Errorf("locking: %w", err)
	}
	return nil
}

// apply applies the migrations not yet recorded, each in a transaction of
// its own, and returns those it applied.
func (s *Store) apply(ctx context.Context, ms []Migration) ([]Migration, error) {
	var applied []Migration
	for _, m := range ms {
		did := false
		err := s.inTx(ctx, func(tx *sqlx.Tx) error {
			if err := s.lock(ctx, tx); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, createMigrationsTable); err != nil {
				return err
			}
			var n int
			if err := tx.GetContext(ctx, &n, tx.Rebind(
				`SELECT COUNT(*) FROM schema_migrations WHERE scope = ? AND version = ?`), m.Scope, m.Version); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO schema_migrations (scope, version, name, applied_at)
				VALUES (?, ?, ?, CURRENT_TIMESTAMP)`), m.Scope, m.Version, m.Name)
			did = err == nil
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("store: migration %s/%s: %w", m.Scope, m.Name, err)
		}
		if did {
			applied = append(applied, m)
		}
	}
	return applied, nil
}
